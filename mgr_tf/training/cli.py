"""`python -m mgr_tf.train`: flags (generated from the config dataclasses and the registries) -> `run.train`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.cli import UserError, add_dataclass_args, dataclass_from_args, quiet_tensorflow
from mgr_tf.config import DataConfig
from mgr_tf.genres import EMOTIONS
from mgr_tf.training.run import TrainConfig, default_run_name, train

PUBLISHED_WEIGHTS_ALIAS = "published"


def build_parser() -> argparse.ArgumentParser:
    """The parser: task, model family and output flags, then one group per config dataclass / backbone."""
    from mgr_tf.feature_types import FEATURE_TYPES
    from mgr_tf.models import BACKBONES, ModelConfig
    from mgr_tf.tasks import TASKS

    parser = argparse.ArgumentParser(
        prog="python -m mgr_tf.train",
        description="Train, evaluate, report and export a genre, emotion or multitask model. With no flags it "
                    "trains the default CNN genre model on the embedded synthetic corpus (generated on first "
                    "use) and exports it to exported_models/.",
    )
    parser.add_argument("--task", default="genre", choices=list(TASKS), help="what to predict (default: genre)")
    parser.add_argument("--model", default="cnn", choices=list(BACKBONES),
                        help="backbone family (default: cnn): " + "; ".join(f"{k}: {b.description}"
                                                                             for k, b in BACKBONES.items()))
    parser.add_argument("--out", default=None, help="run folder (default: runs/<task>_<model>_<features>[_beat]; "
                        "rerunning the same command resumes an interrupted run there)")
    parser.add_argument("--export", default="auto", metavar="NAME",
                        help="export name under --export-root ('auto' = the run name; 'none' = do not export) "
                             "(default: auto)")
    parser.add_argument("--export-root", default="exported_models", help="export root folder (default: %(default)s)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="do not train the summary-statistics baseline on the same split for the report")
    data_group = parser.add_argument_group("data")
    add_dataclass_args(data_group, DataConfig, skip=("task", "variable_length", "cv_folds", "cv_fold"), help_texts={
        "features": "model input, derived from the stored arrays: "
                    + "; ".join(f"{k}: {f.description}" for k, f in FEATURE_TYPES.items())})
    train_group = parser.add_argument_group("training")
    add_dataclass_args(train_group, TrainConfig, skip=("learning_rate", "loss_weights"))
    train_group.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float,
                             default=TrainConfig.learning_rate, help=f"Adam learning rate (default: {TrainConfig.learning_rate})")
    train_group.add_argument("--loss-weights", nargs="+", default=None,
                             help="multitask weights of valence, energy, danceability: three numbers, or "
                                  "'published' for 1.5 0.8 0.8 (default: equal)")
    add_dataclass_args(parser.add_argument_group("model"), ModelConfig, skip=("family", "backbone"))
    for name, spec in BACKBONES.items():
        add_dataclass_args(parser.add_argument_group(f"model: {name}"), spec.options)
    return parser


def _parse_loss_weights(values) -> tuple[float, ...]:
    from mgr_tf.losses import PUBLISHED_WEIGHTS

    if values is None:
        return TrainConfig.loss_weights
    if values == [PUBLISHED_WEIGHTS_ALIAS]:
        return tuple(float(PUBLISHED_WEIGHTS[t]) for t in EMOTIONS)
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise UserError(f"--loss-weights: expected three numbers or 'published', got {' '.join(values)}") from None


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the flags, defaulting data flags to the chosen backbone's `data_defaults` (flags still win).

    E.g. `--model musicnn` defaults to `--features musicnn --patch-frames 0`.
    """
    from mgr_tf.models import get_backbone

    known, _ = parser.parse_known_args(argv)
    defaults = get_backbone(known.model).data_defaults
    if defaults:
        parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def configs_from_args(args: argparse.Namespace):
    """(DataConfig, ModelConfig, TrainConfig) from parsed flags."""
    from mgr_tf.models import ModelConfig, get_backbone

    spec = get_backbone(args.model)
    data = dataclass_from_args(DataConfig, args, task=args.task, variable_length=spec.variable_length)
    model_config = dataclass_from_args(ModelConfig, args, family=args.model,
                                       backbone=dataclass_from_args(spec.options, args))
    train_config = dataclass_from_args(TrainConfig, args, loss_weights=_parse_loss_weights(args.loss_weights))
    return data, model_config, train_config


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = parse_args(build_parser(), argv)
    data, model_config, train_config = configs_from_args(args)
    run_name = default_run_name(data, args.model)
    run_dir = Path(args.out or Path("runs") / run_name)
    export_name = None if args.export.lower() == "none" else (run_name if args.export == "auto" else args.export)
    if train_config.overfit_batch and args.export == "auto":
        export_name = None  # a model memorising one batch is a check, not something to serve
    command = "python -m mgr_tf.train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report = train(data, model_config, train_config, run_dir, export_name=export_name,
                   export_root=args.export_root, command=command.strip(), baseline=args.baseline)
    print(f"\n[train] report: {run_dir / 'report.md'}")
    print(summary_line(report))
    if report.get("export_dir"):
        print(f"[train] exported SavedModel: {report['export_dir']}")
    return 0


def summary_line(report: dict) -> str:
    """`[train] <split>: <headline numbers>` (and the baseline's, when it was trained)."""
    from mgr_tf.tasks import get_task

    line = f"[train] {report['eval_split']}: {get_task(report['task']).summary_line(report['metrics'])}"
    if report.get("baseline"):
        line += f" | summary baseline on the same split: {get_task(report['task']).summary_line(report['baseline']['metrics'])}"
    return line
