"""`python -m mgr_tf.explore [DATA_ROOT | RUN_DIR] --out DIR`: exploratory figures (`mgr_tf.analysis.explore`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, UserError, quiet_tensorflow, run_cli
from mgr_tf.core.config import DataConfig


def is_run_dir(path: Path) -> bool:
    """A training run folder (config.json and model.keras) rather than a dataset root."""
    return (path / "config.json").is_file() and (path / "model.keras").is_file()


def build_parser() -> argparse.ArgumentParser:
    """The `python -m mgr_tf.explore` flags."""
    parser = ArgumentParser(
        prog="python -m mgr_tf.explore",
        description="Exploratory figures (PNGs listed in DIR/index.md). Given a dataset root: a mel spectrogram and "
                    "a chromagram per genre (full and beat-synced side by side), clips per genre before and after "
                    "the 20 -> 10 mapping, beat-synchronous lengths, emotion histograms and correlations. Given a "
                    "trained CNN run folder: activation maps of its first conv blocks for one clip per genre and a "
                    "2-D PCA of its embeddings coloured by genre.")
    parser.add_argument("path", nargs="?", default=None, metavar="DATA_ROOT|RUN_DIR",
                        help="a dataset root or a run folder of python -m mgr_tf.train (default: the embedded "
                             "synthetic corpus, generated on first use)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: RUN_DIR/explore for a run, explore/<root name> for a root)")
    parser.add_argument("--blocks", type=int, default=2, help="run mode: conv blocks whose activations are drawn "
                        "(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    if args.path is not None and not Path(args.path).exists():
        raise UserError(f"{args.path}: no such dataset root or run folder")
    if args.path is not None and is_run_dir(Path(args.path)):
        from mgr_tf.analysis.explore_run import explore_run  # TensorFlow on demand: flags checked first

        run_dir = Path(args.path)
        index = explore_run(run_dir, Path(args.out or run_dir / "explore"), blocks=args.blocks)
    else:
        from mgr_tf.analysis.explore import explore_data  # TensorFlow on demand
        from mgr_tf.data.prepare import resolve_root  # TensorFlow on demand

        root = resolve_root(DataConfig(data_dir=args.path))
        if args.path is not None and (Path(args.path) / "config.json").is_file():
            raise UserError(f"{args.path}: a run folder without model.keras (training did not finish)")
        index = explore_data(root, Path(args.out or Path("explore") / root.name))
    print(f"[explore] wrote {index}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
