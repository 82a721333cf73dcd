"""`python -m mgr_tf.pretrained FAMILY ...`: published pretrained weights -> Keras 3 `.keras` files.

One subcommand per registered pretrained family that converts published weights (today musicnn: its TF1
checkpoints from the musicnn 0.1.0 wheel); `--export DIR` also writes the converted tagger as a TF Serving
SavedModel (`mgr_tf.serving.tagger`).

    python -m mgr_tf.pretrained musicnn --wheel musicnn-0.1.0-py3-none-any.whl --model MSD_musicnn --out msd.keras
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, quiet_tensorflow, run_cli
from mgr_tf.models import BACKBONES


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand per family with a converter, with that family's flags and --export."""
    parser = ArgumentParser(
        prog="python -m mgr_tf.pretrained",
        description="Convert published pre-trained music encoders to Keras 3 (.keras) files.")
    families = parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for name, backbone in BACKBONES.items():
        converter = backbone.encoder.converter if backbone.encoder else None
        if converter is None:
            continue
        sub = families.add_parser(name, help=converter.help, description=converter.description or converter.help)
        converter.add_arguments(sub)
        sub.add_argument("--export", metavar="DIR", default=None,
                         help="also write a TF Serving auto-tagger to DIR/<version>/ (serving_waveform: mono audio "
                              "at the encoder's rate -> its tags; python -m mgr_tf.predict DIR song.mp3 --tags)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    converter = BACKBONES[args.family].encoder.converter
    out = converter.convert(args)
    print(f"wrote {out} ({args.family})")
    if args.export:
        import keras  # TensorFlow on demand: flags checked first

        from mgr_tf.serving.tagger import export_tagger  # TensorFlow on demand

        exported = export_tagger(keras.saving.load_model(out, compile=False), args.export, converter.tagger(),
                                 family=args.family)
        print(f"exported the tagger: {exported}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
