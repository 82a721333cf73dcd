"""`python -m mgr_tf.tune tuning/<study>.json`: a keras-tuner study of the multitask loss weights
(`mgr_tf.tuning`)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, quiet_tensorflow, run_cli
from mgr_tf.core.paths import DEFAULT_EXPORT_ROOT
from mgr_tf.training.flags import command_line


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m mgr_tf.tune`."""
    parser = ArgumentParser(
        prog="python -m mgr_tf.tune",
        description="Run a keras-tuner study of the multitask loss weights, one per regression target of the data "
                    "(valence, energy, danceability in the published layout). "
                    "Each trial trains a model with the same code as mgr_tf.train and is scored by the mean "
                    "validation Spearman correlation. Rerunning the same command continues the study. "
                    "Distributed tuning: set KERASTUNER_TUNER_ID (chief / tuner0, tuner1, ...), "
                    "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (see tuning/README.md).")
    parser.add_argument("study", help="study file, e.g. tuning/multitask_weights.json")
    parser.add_argument("--data-dir", default=None,
                        help="dataset root (overrides the study's data_dir; default: the study's, else the "
                             "embedded synthetic corpus)")
    parser.add_argument("--max-trials", type=int, default=None,
                        help="trials to reach in total, finished ones included (default: the study's max_trials)")
    parser.add_argument("--out", default=None, help="run folder (default: tuning/runs/<study name>)")
    parser.add_argument("--export", default=None, metavar="NAME",
                        help="retrain the best configuration on train + validation and export it as "
                             "exported_models/NAME/<version>/ (default: no export)")
    parser.add_argument("--export-root", default=DEFAULT_EXPORT_ROOT, help="export root folder (default: %(default)s)")
    parser.add_argument("--references", action=argparse.BooleanOptionalAction, default=None,
                        help="train the reference rows (equal, published, learned weights) once, cached in the "
                             "run folder (default: the study's 'references', true)")
    parser.add_argument("--export-from", choices=["trial", "overall"], default="trial",
                        help="with --export: the best tuned trial, or the best row overall (references included) "
                             "(default: trial)")
    return parser




def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    from mgr_tf.tuning.search import run_study  # TensorFlow on demand: flags checked first

    return run_study(args, command_line("python -m mgr_tf.tune", argv).strip())


if __name__ == "__main__":
    sys.exit(run_cli(main))
