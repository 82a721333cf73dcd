"""`python -m mgr_tf.synth`: the command-line entry point; the code lives in `mgr_tf.audio.synth`."""

import sys

from mgr_tf.cli import run_cli
from mgr_tf.audio.synth import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
