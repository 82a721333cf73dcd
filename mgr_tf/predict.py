"""`python -m mgr_tf.predict MODEL_DIR INPUT... [--json] [--top-k K] [--tags]`: predictions from an export
(`mgr_tf.serving.predict`), or a converted tagger's tags (`mgr_tf.serving.tagger`)."""

from __future__ import annotations

import json
import sys
from typing import Sequence

import numpy as np

from mgr_tf.core.cli import ArgumentParser, UserError, quiet_tensorflow, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    parser = ArgumentParser(
        prog="python -m mgr_tf.predict",
        description="Predict genres or emotions with an exported model (exported_models/<name>[/<version>]). "
                    "Inputs: .npy/.npy.gz spectrograms in either orientation, or audio files; audio longer than "
                    "one 30 s clip is cut into windows whose predictions are averaged.")
    parser.add_argument("model_dir", help="export folder: exported_models/<name> (highest version) or a version folder")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="spectrogram (.npy/.npy.gz) or audio files")
    parser.add_argument("--json", action="store_true", help="print one JSON document (with per-window values)")
    parser.add_argument("--top-k", type=int, default=3, help="genres (or tags) listed per input (default: %(default)s)")
    parser.add_argument("--tags", action="store_true",
                        help="auto-tagging with a converted musicnn model: MODEL_DIR is the converter's .keras file "
                             "(python -m mgr_tf.pretrained) or its tagger export; INPUTs are audio files; prints "
                             "musicnn's own 50 tags")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise UserError("--top-k must be at least 1")
    from mgr_tf.serving.predict import Predictor, format_result  # TensorFlow on demand: flags checked first

    if args.tags:
        return _print_tags(args)
    predictor = Predictor(args.model_dir)
    results, failures = [], 0
    for path in args.inputs:
        try:
            result = predictor.predict_file(path)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if "probabilities" in result:
            result["top_k"] = list(result["probabilities"])[: args.top_k]
        results.append(result)
        if not args.json:
            print(format_result(result, args.top_k))
    if args.json:
        print(json.dumps({"model": str(predictor.model_dir), "task": predictor.task, "results": results}, indent=2))
    return 2 if failures else 0



def _print_tags(args) -> int:
    """`--tags`: a converted tagger's own tags for each audio file (a .keras model or its tagger export)."""
    from mgr_tf.serving.tagger import TagPredictor  # TensorFlow on demand

    predictor = TagPredictor(args.model_dir)
    names = predictor.names
    results, failures = [], 0
    for item in args.inputs:
        try:
            probs = predictor.tags(item)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {item}: {exc}", file=sys.stderr)
            failures += 1
            continue
        order = np.argsort(-probs)[: args.top_k]
        results.append({"input": str(item), "tags": {names[i]: float(probs[i]) for i in order}})
        if not args.json:
            print(f"{item}: " + ", ".join(f"{names[i]} {probs[i]:.3f}" for i in order))
    if args.json:
        print(json.dumps({"model": str(args.model_dir), "results": results}, indent=2))
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
