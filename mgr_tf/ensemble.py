"""`python -m mgr_tf.ensemble RUN_DIR...`: ensembles of genre runs on different feature types (`mgr_tf.analysis.ensemble`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.analysis.rules import DESCRIPTIONS
from mgr_tf.core.cli import ArgumentParser, quiet_tensorflow, run_cli
from mgr_tf.core.paths import DEFAULT_EXPORT_ROOT
from mgr_tf.training.flags import command_line


def build_parser() -> argparse.ArgumentParser:
    """The `python -m mgr_tf.ensemble` flags."""
    parser = ArgumentParser(
        prog="python -m mgr_tf.ensemble",
        description="Combine trained genre runs (e.g. mel, MFCC and chroma models) as report 3 did and score "
                    "them on their shared test split (the validation split when the test split is unlabelled). "
                    "The runs must share the data root, split settings and class names. Writes "
                    "ensemble_report.json / .md and one confusion matrix per member and rule. Rules: "
                    + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()) + ".")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by python -m mgr_tf.train")
    parser.add_argument("--method", default="all", choices=[*DESCRIPTIONS, "all"],
                        help="rule(s) to score; also the rule behind the export's 'genre' output ('all' scores "
                             "every rule and exports majority vote) (default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="report folder (default: runs/ensemble_<member folder names joined by '+'>)")
    parser.add_argument("--export", default=None, metavar="NAME",
                        help="also export the ensemble as ONE SavedModel <export-root>/NAME/<version>/ taking the "
                             "fused spectrogram (and, when no member is beat-synchronous, the waveform)")
    parser.add_argument("--export-root", default=DEFAULT_EXPORT_ROOT, help="export root folder (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    from mgr_tf.analysis.ensemble import REPORT_NAME, run_ensemble  # TensorFlow on demand: flags checked first

    report = run_ensemble(args.run_dirs, args.method, args.out, command=command_line("python -m mgr_tf.ensemble", argv),
                          export=args.export, export_root=args.export_root)
    for i, m in enumerate(report["members"]):
        print(f"[ensemble] member {i} {m['label']}: accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}")
    for name, m in report["methods"].items():
        print(f"[ensemble] {name}: accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}")
    if report.get("export_dir"):
        print(f"[ensemble] exported SavedModel: {report['export_dir']}")
    print(f"[ensemble] report: {Path(report['out']) / (REPORT_NAME + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
