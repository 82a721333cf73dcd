"""`python -m mgr_tf.export RUN_DIR [--name NAME] [--root DIR]`: a finished run's model as a new SavedModel version."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, quiet_tensorflow, run_cli
from mgr_tf.core.paths import DEFAULT_EXPORT_ROOT


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    parser = ArgumentParser(
        prog="python -m mgr_tf.export",
        description="Export a finished training run (its best model) as a TF Serving SavedModel version. "
                    "Run it with CUDA_VISIBLE_DEVICES=-1 when the run was trained on a GPU.")
    parser.add_argument("run_dir", help="a run folder written by python -m mgr_tf.train")
    parser.add_argument("--name", help="model name (default: the run's export name or its folder name)")
    parser.add_argument("--root", default=DEFAULT_EXPORT_ROOT, help="export root (default: %(default)s)")
    args = parser.parse_args(argv)

    from mgr_tf.serving.export import export_run  # TensorFlow on demand: flags checked first

    path = export_run(Path(args.run_dir), name=args.name, root=args.root)
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
