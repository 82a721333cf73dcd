"""`python -m mgr_tf.train`: the command-line entry point; the code lives in `mgr_tf.training.run`."""

import sys

from mgr_tf.cli import run_cli
from mgr_tf.training.cli import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
