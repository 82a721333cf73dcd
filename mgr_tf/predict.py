"""`python -m mgr_tf.predict`: the command-line entry point; the code lives in `mgr_tf.serving.predict`."""

import sys

from mgr_tf.cli import run_cli
from mgr_tf.serving.predict import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
