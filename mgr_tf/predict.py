"""`python -m mgr_tf.predict MODEL_DIR INPUT... [--out FILE] [--tags] [--beam]`: predictions from an export
(`mgr_tf.serving.predict`) or a converted tagger's tags (`mgr_tf.serving.tagger`), for a few files or a whole
collection (`mgr_tf.serving.batch`, `mgr_tf.serving.rows`; `--beam`: `mgr_tf.serving.predict_beam`)."""

from __future__ import annotations

import json
import math
import sys
from typing import Sequence

from mgr_tf.core.cli import ArgumentParser, Progress, UserError, quiet_tensorflow, run_cli
from mgr_tf.core.config import DEFAULT_FRAME_CAP, DEFAULT_SIZE_CAP_MB, PRECISIONS
from mgr_tf.core.rows import FORMATS, RowWriter
from mgr_tf.data.inputs import list_inputs
from mgr_tf.features.decode import SILENCE_DB


def build_parser() -> ArgumentParser:
    """The command's flags (no TensorFlow)."""
    parser = ArgumentParser(
        prog="python -m mgr_tf.predict",
        description="Predict genres or emotions with an exported model (exported_models/<name>[/<version>]). "
                    "Inputs: .npy/.npy.gz spectrograms in either orientation, audio files, folders (searched "
                    "recursively) or a file list; audio longer than one clip is cut into windows whose "
                    "predictions are averaged. Without --out one line (or, with --json, one JSON document) per "
                    "input is printed; with --out the model is loaded once, audio is decoded in parallel, windows "
                    "of many files go through the model together and one row per file is appended as it is done.",
        epilog="Unknown flags after --beam are passed to Apache Beam as pipeline options, e.g. --runner=DataflowRunner "
               "--project=P --region=R --temp_location=gs://B/tmp (default runner: DirectRunner).")
    parser.add_argument("model_dir", help="export folder: exported_models/<name> (highest version) or a version "
                                          "folder; with --tags a converted .keras tagger or its tagger export")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="spectrogram (.npy/.npy.gz) or audio files, or folders of them")
    parser.add_argument("--files-from", metavar="FILE",
                        help="also predict the files listed in FILE, one path per line ('-' = standard input; "
                             "blank lines and lines starting with # are skipped)")
    parser.add_argument("--out", metavar="FILE",
                        help="write rows to FILE (.csv or .jsonl, by the extension), one per file as it is done: "
                             "input, windows, then the scores (genre and each class's probability, each emotion, "
                             "or each tag). Resumable: files already in FILE are skipped")
    parser.add_argument("--timeline", action="store_true",
                        help="with --out: one row per window instead of per file (input, window, start, end in "
                             "seconds, windows, scores)")
    parser.add_argument("--workers", type=int, default=0,
                        help="audio decoding processes (default: 0 = one per CPU core; with --tags, whose network "
                             "needs the cores itself, the cores less two; 1 = decode in the main process)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples per model call: windows (default 16), or with --tags 3 s patches (default 32)")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="refuse recordings shorter than this, as ingest does (default: the model's clip length "
                             "less 1 s, at most half the clip; with --tags any length)")
    parser.add_argument("--silence-db", type=float, default=SILENCE_DB,
                        help="refuse recordings whose peak is at or below this level, in dBFS (default: %(default)s)")
    parser.add_argument("--frame-cap", type=int, default=DEFAULT_FRAME_CAP,
                        help="refuse a .npy input longer than this many frames, from its header (default: "
                             "%(default)s)")
    parser.add_argument("--size-cap-mb", type=float, default=DEFAULT_SIZE_CAP_MB,
                        help="refuse a .npy input holding more MiB of data than this once decompressed (default: "
                             "%(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON document (with per-window values)")
    parser.add_argument("--top-k", type=int, default=3, help="genres (or tags) listed per input (default: %(default)s)")
    parser.add_argument("--tags", action="store_true",
                        help="auto-tagging with a converted musicnn model: MODEL_DIR is the converter's .keras file "
                             "(python -m mgr_tf.pretrained) or its tagger export; INPUTs are audio files; gives "
                             "musicnn's own 50 tags")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="compute precision of a pretrained encoder (--tags with a .keras file): float32 (the "
                             "published numbers) or bfloat16 (faster only on CPUs with fast bfloat16 units; "
                             "docs/results.md) (default: %(default)s)")
    parser.add_argument("--beam", action="store_true",
                        help="run the prediction as an Apache Beam pipeline (needs the 'beam' extra) writing "
                             "sharded --out files (FILE-00000-of-0000N.csv ...); unknown flags become pipeline "
                             "options")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not args.beam:
        parser.error(f"unrecognized arguments: {' '.join(extra)} (pipeline options need --beam)")
    _check(parser, args)
    paths = list_inputs(args.inputs, args.files_from)
    if not paths:
        raise UserError("no input files (the folders hold no audio or spectrogram files)")
    if args.beam:
        from mgr_tf.serving.predict_beam import run_pipeline  # TensorFlow and Apache Beam on demand (optional)

        summary = run_pipeline(args.model_dir, paths, args.out, _options(args), timeline=args.timeline,
                               pipeline_args=extra)
        for problem in summary["problems"]:
            print(f"error: {problem}", file=sys.stderr)
        print(f"wrote {summary['rows']} rows for {summary['files']} files to {summary['out']} "
              f"({summary['refused']} refused)", file=sys.stderr)
        return 2 if summary["refused"] else 0
    from mgr_tf.serving.batch import predict_inputs  # TensorFlow on demand: flags checked first
    from mgr_tf.serving.predictors import open_model  # TensorFlow on demand

    model = open_model(args.model_dir, **_options(args))
    if args.out:
        return _write_rows(model, paths, args, predict_inputs)
    return _print_results(model, paths, args, predict_inputs)


def _check(parser: ArgumentParser, args) -> None:
    if args.top_k < 1:
        raise UserError("--top-k must be at least 1")
    if not args.inputs and args.files_from is None:
        parser.error("give INPUT files or folders, or --files-from FILE")
    if args.workers < 0:
        parser.error("--workers must be 0 (one per core) or more")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.frame_cap < 1 or not args.size_cap_mb > 0:
        parser.error("--frame-cap and --size-cap-mb must be positive")
    if args.min_seconds is not None and not (math.isfinite(args.min_seconds) and args.min_seconds >= 0):
        parser.error(f"--min-seconds must be a number of seconds, 0 or more, got {args.min_seconds}")
    if not (math.isfinite(args.silence_db) and args.silence_db <= 0):
        parser.error(f"--silence-db must be a level in dBFS, 0 or below, got {args.silence_db}")
    if args.timeline and not args.out:
        parser.error("--timeline writes rows to --out FILE")
    if args.timeline and args.tags:
        parser.error("--timeline gives windows of a genre or emotion model; --tags averages a whole recording")
    if args.beam and not args.out:
        parser.error("--beam writes sharded files: give --out FILE")
    if args.out and args.json:
        parser.error("--json prints to the terminal; --out writes rows to a file: choose one")
    if args.precision != "float32" and not args.tags:
        parser.error("--precision applies to a pretrained encoder (--tags); an export keeps the precision it "
                     "was trained with (train --musicnn-precision)")
    if args.out and not args.out.lower().endswith(tuple(FORMATS)):
        parser.error(f"--out must end in {' or '.join(FORMATS)} (the format is chosen by the extension)")


def _options(args) -> dict:
    """The flags that choose and configure the model (`mgr_tf.serving.predictors.open_model`), as plain values."""
    return {"tags": args.tags, "precision": args.precision, "batch_size": args.batch_size,
            "min_seconds": args.min_seconds, "silence_db": args.silence_db, "frame_cap": args.frame_cap,
            "size_cap_mb": args.size_cap_mb}


def _print_results(model, paths: list[str], args, predict_inputs) -> int:
    """A line per input (or one JSON document), as the command always printed."""
    from mgr_tf.serving.predict import format_result  # TensorFlow on demand

    results, failures = [], 0
    for result in predict_inputs(model, paths, workers=args.workers):
        if result.problem is not None:
            print(f"error: {result.problem}", file=sys.stderr)
            failures += 1
            continue
        if args.tags:
            probs = model.probabilities(result.outputs)
            order = probs.argsort()[::-1][: args.top_k]
            entry = {"input": result.input, "tags": {model.names[i]: float(probs[i]) for i in order}}
            line = f"{result.input}: " + ", ".join(f"{model.names[i]} {probs[i]:.3f}" for i in order)
        else:
            entry = model.result_of(result)
            if "probabilities" in entry:
                entry["top_k"] = list(entry["probabilities"])[: args.top_k]
            line = format_result(entry, args.top_k)
        results.append(entry)
        if not args.json:
            print(line, flush=True)
    if args.json:
        document = {"model": str(args.model_dir), "results": results}
        if not args.tags:
            document = {"model": str(model.model_dir), "task": model.task, "results": results}
        print(json.dumps(document, indent=2))
    return 2 if failures else 0


def _write_rows(model, paths: list[str], args, predict_inputs) -> int:
    """Rows appended to --out as files finish; files already there skipped."""
    from mgr_tf.serving.batch import columns, file_rows  # TensorFlow on demand

    with RowWriter(args.out, columns(model, args.timeline), grouped=args.timeline) as writer:
        todo = [p for p in paths if p not in writer.done]
        skipped, rows, failures = len(paths) - len(todo), 0, 0
        with Progress(len(todo), "predict", "files", enabled=not args.quiet) as bar:
            for result in predict_inputs(model, todo, workers=args.workers):
                if result.problem is not None:
                    print(f"error: {result.problem}", file=sys.stderr, flush=True)
                    failures += 1
                else:
                    lines = file_rows(result, model, args.timeline)
                    writer.write(lines)
                    rows += len(lines)
                bar.update(1, refused=failures)
    print(f"wrote {rows} rows for {len(todo) - failures} files to {args.out} ({skipped} already there, "
          f"{failures} refused)", file=sys.stderr)
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
