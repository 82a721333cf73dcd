"""`python -m mgr_tf.cv DATA_ROOT --folds 5 [any train flag]`: stratified k-fold cross-validation
(`mgr_tf.training.cv`), the summary baseline on the same folds."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.core.cli import UserError, quiet_tensorflow, run_cli
from mgr_tf.training.cluster import resolve_mode
from mgr_tf.training.flags import build_parser as train_parser
from mgr_tf.training.flags import command_line, parse_args, plan_from_args
from mgr_tf.training.plan import check, default_run_name


def build_parser() -> argparse.ArgumentParser:
    """train's parser plus DATA_ROOT, --folds and a CV-specific --out."""
    parser = train_parser("python -m mgr_tf.cv")
    parser.description = ("Stratified k-fold cross-validation of one model and the summary-statistics baseline "
                          "on the same folds. Takes every flag of python -m mgr_tf.train.")
    parser.add_argument("data_root", help="dataset root (the layout of python -m mgr_tf.ingest or the published data)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds")
    parser.add_argument("--learning-curve", type=float, nargs="+", default=None, metavar="SHARE",
                        help="cross-validate at these shares of each fold's training clips (e.g. 0.125 0.25 0.5 1) and "
                             "plot the model and the baseline against training clips per class (learning_curve.png)")
    parser.set_defaults(export="none")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = parse_args(build_parser(), argv)
    args.data_dir = args.data_root
    plan = plan_from_args(args, argv)
    out = Path(args.out or Path("runs") / f"cv{args.folds}_{default_run_name(plan.data, args.model)}")
    plan = check(dataclasses.replace(plan, run_dir=out, export_name=None,
                                     command=command_line("python -m mgr_tf.cv", argv).strip()))
    if resolve_mode(plan.train.distribute) == "multiworker":
        raise UserError("python -m mgr_tf.cv does not run on several workers: use one process or --distribute "
                        "mirrored (one host, several GPUs); see docs/distributed.md")
    if args.learning_curve and not all(0 < f <= 1 for f in args.learning_curve):
        raise UserError(f"--learning-curve: shares must be in (0, 1], got {' '.join(map(str, args.learning_curve))}")
    from mgr_tf.training.cv import cross_validate, learning_curve  # TensorFlow on demand: the flags are checked first

    if args.learning_curve:
        curve = learning_curve(plan, args.folds, args.learning_curve)
        print(f"\n[cv] learning curve: {out / 'learning_curve.md'} ({out / 'learning_curve.png'})")
        for point in curve["points"]:
            print(f"[cv] {point['clips_per_class']:.1f} clips per class: " + ", ".join(
                f"{model} {s[curve['metric']]['mean']:.3f}" for model, s in point["summary"].items()))
        return 0
    result = cross_validate(plan, args.folds)
    print(f"\n[cv] report: {out / 'cv_report.md'}")
    for model, values in result["summary"].items():
        print(f"[cv] {model}: " + ", ".join(f"{m} {v['mean']:.3f} ± {v['std']:.3f}"
                                            for m, v in values.items() if m != "seconds"))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
