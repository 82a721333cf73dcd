"""`python -m mgr_tf.tune`: the command-line entry point; the code lives in `mgr_tf.tuning`."""

import sys

from mgr_tf.cli import run_cli
from mgr_tf.tuning.cli import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
