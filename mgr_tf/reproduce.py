"""`python -m mgr_tf.reproduce`: the command-line entry point; the code lives in `mgr_tf.analysis.reproduce`."""

import sys

from mgr_tf.cli import run_cli
from mgr_tf.analysis.reproduce import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
