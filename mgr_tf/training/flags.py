"""The flags of `python -m mgr_tf.train` (and of `cv`, which adds its own): generated from the config dataclasses
and the registries, parsed into a `Plan`. Imports no TensorFlow, so `--help` and flag errors answer at once.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, UserError, add_dataclass_args, dataclass_from_args
from mgr_tf.core.config import DataConfig, ModelConfig, RegressionConfig, TrainConfig
from mgr_tf.core.paths import DEFAULT_EXPORT_ROOT
from mgr_tf.core.published import EMOTIONS, PUBLISHED_WEIGHTS
from mgr_tf.data.readers import has_encoder_input
from mgr_tf.data.spec import resolve
from mgr_tf.models import BACKBONES, FEATURE_TYPES, get_backbone
from mgr_tf.tasks import TASKS
from mgr_tf.training.plan import Plan, default_run_name

PUBLISHED_WEIGHTS_ALIAS = "published"
AUTO_MODEL = "auto"
FROM_SCRATCH_DEFAULT = "cnn"  # the family --model auto trains when the root holds no encoder input


def build_parser(prog: str = "python -m mgr_tf.train") -> argparse.ArgumentParser:
    """The parser: task, model family and output flags, then one group per config dataclass / backbone."""
    parser = ArgumentParser(
        prog=prog,
        description="Train, evaluate, report and export a genre, emotion or multitask model. With no flags it "
                    "trains the default CNN genre model on the embedded synthetic corpus (generated on first "
                    "use) and exports it to exported_models/.",
    )
    parser.add_argument("--task", default="genre", metavar="TASK",
                        help="what to predict: " + ", ".join(TASKS) + ", or the name of one regression target of the "
                             "data; regression (alias multitask) predicts every target of the data's label CSV, or "
                             "those of --targets (default: genre)")
    parser.add_argument("--model", default=AUTO_MODEL, choices=[AUTO_MODEL, *BACKBONES],
                        help=f"backbone family (default: {AUTO_MODEL}: a pretrained encoder when the data root holds "
                             f"its input, which ingest stores from the audio, else {FROM_SCRATCH_DEFAULT}; the report "
                             "says which and why): " + "; ".join(f"{k}: {b.description}" for k, b in BACKBONES.items()))
    parser.add_argument("--out", default=None, help="run folder (default: runs/<task>_<model>_<features>[_beat]; "
                        "rerunning the same command resumes an interrupted run there)")
    parser.add_argument("--export", default="auto", metavar="NAME",
                        help="export name under --export-root ('auto' = the run name; 'none' = do not export) "
                             "(default: auto)")
    parser.add_argument("--export-root", default=DEFAULT_EXPORT_ROOT, help="export root folder (default: %(default)s)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="do not train the summary-statistics baseline on the same split for the report")
    data_group = parser.add_argument_group("data")
    add_dataclass_args(data_group, DataConfig, skip=("task", "variable_length", "cv_folds", "cv_fold", "targets"), help_texts={
        "features": "model input, derived from the stored arrays: "
                    + "; ".join(f"{k}: {f.description}" for k, f in FEATURE_TYPES.items())},
        choices={"features": FEATURE_TYPES})
    train_group = parser.add_argument_group("training")
    add_dataclass_args(train_group, TrainConfig, skip=("learning_rate",))
    train_group.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float,
                             default=TrainConfig.learning_rate, help=f"Adam learning rate (default: {TrainConfig.learning_rate})")
    regression_group = parser.add_argument_group("regression targets (emotion and multitask tasks)")
    regression_group.add_argument("--targets", nargs="+", default=(), metavar="NAME",
                                  help="the targets --task regression predicts, by name (comma- or space-separated; "
                                       "default: every column of the data's label CSV)")
    add_dataclass_args(regression_group, RegressionConfig, skip=("loss_weights",))
    regression_group.add_argument("--loss-weights", nargs="+", default=None, metavar="WEIGHT",
                                  help="fixed multitask weights: by name (calmness=2 power=1; a target not named "
                                       "weighs 1), one number per target in the task's order, or 'published' for "
                                       "report 2's valence 1.5, energy 0.8, danceability 0.8 (default: equal)")
    add_dataclass_args(parser.add_argument_group("model"), ModelConfig, skip=("family", "backbone"))
    for name, spec in BACKBONES.items():
        add_dataclass_args(parser.add_argument_group(f"model: {name}"), spec.options)
    return parser


def _parse_loss_weights(values, targets: Sequence[str] = EMOTIONS) -> dict[str, float]:
    """{target: weight} of the --loss-weights words, for a task predicting `targets` (in order)."""
    if not values:
        return {}
    if list(values) == [PUBLISHED_WEIGHTS_ALIAS]:
        return {t: float(PUBLISHED_WEIGHTS[t]) for t in EMOTIONS}
    words = [w for v in values for w in v.split(",") if w]
    try:
        if all("=" in w for w in words):
            weights = {name.strip(): float(value) for name, value in (w.split("=", 1) for w in words)}
            unknown = sorted(set(weights) - set(targets))
            if unknown:
                raise UserError(f"--loss-weights: {unknown[0]!r} is not a target of the task "
                                f"({', '.join(targets)})")
            return weights
        numbers = [float(w) for w in words]
    except ValueError:
        raise UserError(f"--loss-weights: expected numbers, name=number pairs or 'published', got "
                        f"{' '.join(values)}") from None
    if len(numbers) != len(targets):
        raise UserError(f"--loss-weights: {len(numbers)} numbers for the {len(targets)} targets "
                        f"({', '.join(targets)}); give one per target, or name=number pairs")
    return dict(zip(targets, numbers))


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the flags, defaulting data flags to the chosen backbone's `data_defaults` (flags still win).

    E.g. `--model musicnn` defaults to `--features musicnn --patch-frames 0`.
    """
    known, _ = parser.parse_known_args(argv)
    reason = ""
    if known.model == AUTO_MODEL:
        known.model, reason = auto_model(getattr(known, "data_root", None) or known.data_dir, known.task, known.beat,
                                         known.targets)
        parser.set_defaults(model=known.model)
    defaults = get_backbone(known.model).data_defaults
    if defaults:
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    args.model, args.model_reason = known.model, reason
    return args


def auto_model(data_dir: str | None, task: str, beat: bool, targets: Sequence[str] = ()) -> tuple[str, str]:
    """(family, why) of `--model auto`: the first pretrained encoder whose stored input the root holds for the task's
    sub-dataset, else the from-scratch default."""
    if data_dir is None:
        return FROM_SCRATCH_DEFAULT, "--model auto: the embedded synthetic corpus holds no encoder input"
    if beat:
        return FROM_SCRATCH_DEFAULT, "--model auto: the encoders read full-length clips, not --beat ones"
    try:
        sub = resolve(DataConfig(data_dir=data_dir, task=task, targets=tuple(
            t for value in targets for t in value.split(",") if t))).sub_dataset
    except (ValueError, FileNotFoundError):
        return FROM_SCRATCH_DEFAULT, "--model auto: the data could not be read (see the error below)"
    for name, backbone in BACKBONES.items():
        if backbone.encoder and has_encoder_input(data_dir, sub, backbone.encoder.feature_type.source):
            return name, (f"--model auto: {Path(data_dir) / sub} holds the {name} encoder input (stored by ingest "
                          "from the audio), and a pretrained encoder beats training from scratch on small data")
    return FROM_SCRATCH_DEFAULT, (f"--model auto: {Path(data_dir) / sub} holds no encoder input (spectrograms only; "
                                  f"ingest stores it from the audio), so {FROM_SCRATCH_DEFAULT} trains from scratch")


def configs_from_args(args: argparse.Namespace) -> tuple[DataConfig, ModelConfig, TrainConfig, RegressionConfig]:
    """(DataConfig, ModelConfig, TrainConfig, RegressionConfig) from parsed flags.

    Raises:
        UserError: a flag value out of its range (one line naming it).
    """
    spec = get_backbone(args.model)
    targets = tuple(t for value in args.targets for t in value.split(",") if t)
    try:
        data = dataclass_from_args(DataConfig, args, task=args.task, variable_length=spec.variable_length,
                                   targets=targets)
        model_config = dataclass_from_args(ModelConfig, args, family=args.model,
                                           backbone=dataclass_from_args(spec.options, args))
        train_config = dataclass_from_args(TrainConfig, args)
        # The weights' names: the outputs of the task on this data (reads the label CSV's header).
        outputs = resolve(data).task.outputs if args.loss_weights else ()
        regression = dataclass_from_args(RegressionConfig, args,
                                         loss_weights=_parse_loss_weights(args.loss_weights, outputs))
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    return data, model_config, train_config, regression


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command as the user typed it (for reports and config.json)."""
    return f"{prog} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def plan_from_args(args: argparse.Namespace, argv: Sequence[str] | None) -> Plan:
    """The `Plan` of parsed train flags: configs, run folder (default runs/<run name>) and export name."""
    data, model_config, train_config, regression = configs_from_args(args)
    run_name = default_run_name(data, args.model)
    export_name = None if args.export.lower() == "none" else (run_name if args.export == "auto" else args.export)
    if train_config.overfit_batch and args.export == "auto":
        export_name = None  # a model memorising one batch is a check, not something to serve
    return Plan(data, model_config, train_config, regression, run_dir=Path(args.out or Path("runs") / run_name),
                export_name=export_name, export_root=args.export_root,
                command=command_line("python -m mgr_tf.train", argv).strip(), baseline=args.baseline,
                model_reason=getattr(args, "model_reason", ""))
