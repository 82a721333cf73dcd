"""`python -m mgr_tf.cv`: the command-line entry point; the code lives in `mgr_tf.training.cv`."""

import sys

from mgr_tf.cli import run_cli
from mgr_tf.training.cv import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
