"""`python -m mgr_tf.ingest AUDIO_DIR LABELS... --out ROOT`: labelled audio -> the dataset layout (`mgr_tf.audio.ingest`)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from mgr_tf.audio.tracks import IngestConfig
from mgr_tf.core.cli import ArgumentParser, UserError, add_dataclass_args, dataclass_from_args, quiet_tensorflow, run_cli
from mgr_tf.core.config import FeatureConfig
from mgr_tf.features.decode import SHORT_TOLERANCE_SECONDS


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: converts an audio folder and prints the summary."""
    quiet_tensorflow()
    parser = ArgumentParser(
        prog="python -m mgr_tf.ingest",
        description="Convert labelled audio files (wav, flac, ogg, mp3) into the dataset layout that "
                    "mgr_tf.train reads: one clip per file, full and beat-synchronous fused (mel + chroma) "
                    "features, and musicnn's encoder input (for the pretrained encoder, which training then picks). "
                    "Into an existing root the new clips are merged. Resumable: finished clips are listed in "
                    "ROOT/ingest_manifest_<task>.jsonl and skipped on the next run; bad files are reported and "
                    "counted in ROOT/ingest_summary.json.",
        epilog="Unknown flags after --beam are passed to Apache Beam as pipeline options "
               "(e.g. --runner=DirectRunner --direct_num_workers=2).")
    parser.add_argument("audio_dir", metavar="AUDIO_DIR",
                        help="folder of audio files (for FMA metadata: the fma_* folder holding 000/000002.mp3 ...)")
    parser.add_argument("labels", metavar="LABELS", nargs="+",
                        help="FMA tracks.csv (genres; genres.csv beside it refines sub-genres) and/or "
                             "echonest.csv (valence, energy, danceability), or one plain CSV with the header "
                             "'path,genre', 'path,<target>,...' or 'path,genre,<target>,...' (paths relative to "
                             "AUDIO_DIR; optional 'id' and 'split' (train/test) columns; any genre names; any "
                             "numeric target columns in [0, 1]; genre and targets give both kinds of sub-datasets "
                             "in one pass)")
    parser.add_argument("--out", required=True, metavar="ROOT", help="dataset root to write (or resume)")
    parser.add_argument("--clip-seconds", type=float, default=FeatureConfig.clip_seconds,
                        help=f"clip length in seconds (default: {FeatureConfig.clip_seconds:g}); files shorter by "
                             f"up to {SHORT_TOLERANCE_SECONDS:g} s are kept unless --min-seconds says otherwise")
    add_dataclass_args(parser, IngestConfig)
    parser.add_argument("--no-encoder", dest="encoder", action="store_const", const="none",
                        help="store no pretrained encoder's input (the same as --encoder none)")
    parser.add_argument("--beam", action="store_true",
                        help="run the conversion as an Apache Beam pipeline (needs the 'beam' extra); "
                             "unknown flags become Beam pipeline options (default runner: DirectRunner)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args, extra = parser.parse_known_args(argv)
    if extra and not args.beam:
        parser.error(f"unrecognized arguments: {' '.join(extra)} (pipeline options need --beam)")
    if args.clip_seconds <= 0:
        raise UserError(f"--clip-seconds must be positive, got {args.clip_seconds}")
    try:
        cfg = dataclass_from_args(IngestConfig, args)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    fcfg = dataclasses.replace(FeatureConfig(), clip_seconds=args.clip_seconds)
    from mgr_tf.audio.ingest import SUMMARY, ingest, print_summary  # TensorFlow on demand: flags checked first

    summary = ingest(args.audio_dir, args.labels, args.out, cfg, fcfg, progress=not args.quiet,
                     beam_args=list(extra) if args.beam else None)
    print_summary(summary)
    print(f"wrote {summary['root']} (summary: {Path(summary['root']) / SUMMARY})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
