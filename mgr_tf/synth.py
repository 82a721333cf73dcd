"""`python -m mgr_tf.synth --out DIR [--seed S] [--clips N] [--duration SEC]`: the synthetic corpus
(`mgr_tf.data.synth.corpus`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, UserError, quiet_tensorflow, run_cli
from mgr_tf.data.synth import DEFAULT_CLIPS, DEFAULT_DURATION


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: writes the synthetic corpus and prints its summary."""
    quiet_tensorflow()
    parser = ArgumentParser(
        prog="python -m mgr_tf.synth",
        description="Write a small, deterministic, learnable corpus in the layout of the published FMA "
                    "spectrogram data (all four sub-datasets), made by synthesising music per genre / emotion "
                    "and running it through mgr_tf's own feature extractor.")
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset root to write")
    parser.add_argument("--seed", type=int, default=0, help="randomness seed; equal seeds give identical files "
                                                            "(default: 0)")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS,
                        help=f"clips in the genre set and in the multitask set each, >= 40 "
                             f"(default: {DEFAULT_CLIPS})")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION,
                        help=f"seconds per clip (default: {DEFAULT_DURATION})")
    parser.add_argument("--withhold-test-labels", action="store_true",
                        help="write no multitask test_labels.txt, as in the original release "
                             "(default: write them so that evaluation works)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    from mgr_tf.data.synth.corpus import generate_corpus  # TensorFlow on demand: flags checked first

    summary = generate_corpus(out, seed=args.seed, clips=args.clips, duration=args.duration,
                              withhold_test_labels=args.withhold_test_labels, progress=not args.quiet)
    for name, splits in summary["counts"].items():
        print(f"{name}: " + ", ".join(f"{s} {n}" for s, n in splits.items()))
    print(f"wrote {summary['root']} in {summary['seconds']:.1f} s "
          f"(full {summary['frames']['full']} frames, beat {summary['frames']['beat'][0]}.."
          f"{summary['frames']['beat'][1]})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
