"""`python -m mgr_tf.reproduce [--data-dir ROOT] [--quick]`: every research topic, one table
(`mgr_tf.analysis.reproduce`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, quiet_tensorflow, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    parser = ArgumentParser(
        prog="python -m mgr_tf.reproduce",
        description="Run every research topic of the README (one training each, with the same code as "
                    "python -m mgr_tf.train) and the mel/chroma/MFCC ensemble, then write one table beside the "
                    "published numbers. Rerunning continues after the last finished topic.")
    parser.add_argument("--data-dir", default=None, help="dataset root (default: the embedded synthetic corpus)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/reproduce[_quick])")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 epoch and tiny models for every topic (checks that all runs work)")
    args = parser.parse_args(argv)
    from mgr_tf.analysis.reproduce import render_markdown, reproduce  # TensorFlow on demand: flags checked first

    out = Path(args.out or ("runs/reproduce_quick" if args.quick else "runs/reproduce"))
    rows = reproduce(out, args.data_dir, args.quick)
    print(f"[reproduce] {len(rows)} rows: {out / 'reproduce.md'}", file=sys.stderr)
    print(render_markdown(rows, args.quick, args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
