"""`python -m mgr_tf.predict --beam`: prediction over many files as an Apache Beam pipeline.

Each element is one input file. A worker's `PredictFiles` loads the model once (`setup`), collects up to
`FILES_PER_CALL` files of a bundle, and predicts them with the engine of the local command
(`mgr_tf.serving.batch.predict_inputs`: decoding and windowing in the worker, windows of those files batched through
the model), so its rows have the columns and numbers of `predict --out` (`columns`, `file_rows`). A file's rows
are one element, so they stay together; they are written as sharded files `STEM-00000-of-0000N.csv` (each CSV
shard with the header) or `.jsonl` beside `--out STEM.csv`, and the files refused as `STEM-refused-*.txt`.

Any runner works (DirectRunner by default; Dataflow, Flink, Spark through ordinary pipeline options, as for
`ingest --beam`) when every worker can read the model folder and the inputs and write beside `--out`: local or
mounted paths, or for inputs and outputs any file system Beam knows (gs://, s3://; a remote input is copied to a
local temporary file before it is decoded). The shards are written afresh: a Beam run does not resume.

Needs the optional `beam` extra (apache-beam).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from mgr_tf.core.cli import quiet_tensorflow
from mgr_tf.core.rows import format_line, header_line, output_format
from mgr_tf.serving.batch import columns, file_rows, predict_inputs
from mgr_tf.serving.predictors import open_model

FILES_PER_CALL = 16  # files of a bundle predicted together (their windows share batches)
REFUSED = "refused"


def _remote(path: str) -> bool:
    return "://" in path


class PredictFiles(beam.DoFn):
    """Input files -> one text element per file (its rows' lines), or its problem on the `REFUSED` output.

    Args:
        model_dir: the model (`open_model`).
        options: `open_model`'s keyword arguments.
        timeline: one row per window.
        fmt: "csv" or "jsonl".
    """

    def __init__(self, model_dir: str, options: dict, timeline: bool, fmt: str):
        super().__init__()
        self.model_dir, self.options, self.timeline, self.fmt = model_dir, dict(options), timeline, fmt

    def setup(self):
        quiet_tensorflow()
        self.model = open_model(self.model_dir, **self.options)
        self.names = columns(self.model, self.timeline)
        self.scratch = tempfile.mkdtemp(prefix="mgr_tf-predict-")

    def teardown(self):
        shutil.rmtree(getattr(self, "scratch", ""), ignore_errors=True)

    def start_bundle(self):
        self.pending: list[str] = []

    def process(self, path: str):
        self.pending.append(path)
        if len(self.pending) >= FILES_PER_CALL:
            yield from self._predict()

    def finish_bundle(self):
        for output in self._predict():
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
            else:
                yield GlobalWindows.windowed_value(output)

    def _local(self, path: str, number: int) -> str:
        """A local copy of a remote input (the decoders read local files)."""
        if not _remote(path):
            return path
        local = os.path.join(self.scratch, f"{number}-{os.path.basename(path)}")
        try:
            with FileSystems.open(path) as source, open(local, "wb") as target:
                shutil.copyfileobj(source, target)
        except Exception:  # any file system error: the decoder then reports the file as missing
            return path
        return local

    def _predict(self):
        paths, self.pending = self.pending, []
        if not paths:
            return
        local = [self._local(p, n) for n, p in enumerate(paths)]
        for path, copy, result in zip(paths, local, predict_inputs(self.model, local, workers=1)):
            if copy != path and os.path.exists(copy):
                os.remove(copy)
            if result.problem is not None:
                yield beam.pvalue.TaggedOutput(REFUSED, result.problem.replace(copy, path))
                continue
            result.input = path
            rows = file_rows(result, self.model, self.timeline)
            yield "".join(format_line(row, self.names, self.fmt) for row in rows).rstrip("\n")


def shard_stem(out: str) -> tuple[str, str]:
    """(prefix, suffix) of the shards of `--out STEM.csv`: ("STEM", ".csv")."""
    root, suffix = os.path.splitext(out)
    return root, suffix


def run_pipeline(model_dir: str, paths: Sequence[str], out: str, options: dict, *, timeline: bool = False,
                 pipeline_args: Sequence[str] = ()) -> dict:
    """Predicts `paths` as a Beam pipeline and waits for it.

    Args:
        model_dir: the model (`mgr_tf.serving.predictors.open_model`).
        paths: the input files (local paths, or any file system Beam reads).
        out: `STEM.csv` or `STEM.jsonl`: the shards are `STEM-SSSSS-of-NNNNN.csv` ...
        options: `open_model`'s keyword arguments.
        timeline: one row per window.
        pipeline_args: Beam pipeline options (e.g. "--runner=DataflowRunner"); DirectRunner by default.

    Returns:
        {"out": the shard pattern, "files": files predicted, "rows": rows written, "refused": count,
         "problems": their lines, "shards": the shard files}.
    """
    fmt = output_format(out)
    args = list(pipeline_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    prefix, suffix = shard_stem(out)
    if not _remote(prefix):
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    quiet_tensorflow()
    # The column names need the model: read them once here (the workers load their own copy).
    header = header_line(columns(open_model(model_dir, **options), timeline), fmt)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its INFO lines would bury the summary
    for pattern in (f"{prefix}-*-of-*{suffix}", f"{prefix}-{REFUSED}-*-of-*.txt"):  # a previous run's shards
        stale = _matching(pattern)
        if stale:
            FileSystems.delete(stale)
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        outputs = (pipeline
                   | "Inputs" >> beam.Create(list(paths))
                   | "Spread" >> beam.Reshuffle()
                   | "Predict" >> beam.ParDo(PredictFiles(model_dir, options, timeline, fmt)).with_outputs(
                       REFUSED, main="rows"))
        _ = outputs.rows | "Rows" >> beam.io.WriteToText(prefix, file_name_suffix=suffix,
                                                         header=header.rstrip("\n") if header else None)
        _ = outputs[REFUSED] | "Refused" >> beam.io.WriteToText(f"{prefix}-{REFUSED}", file_name_suffix=".txt")
    shards = _matching(f"{prefix}-*-of-*{suffix}")
    rows = files = 0
    for shard in shards:
        lines = _read_lines(shard)[1 if header else 0:]
        rows += len(lines)
        files += len({_input_of(line, fmt) for line in lines})
    problems = [line for shard in _matching(f"{prefix}-{REFUSED}-*-of-*.txt") for line in _read_lines(shard)]
    return {"out": f"{prefix}-*-of-*{suffix}", "files": files, "rows": rows, "refused": len(problems),
            "problems": problems, "shards": shards}


def _matching(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _read_lines(path: str) -> list[str]:
    with FileSystems.open(path) as handle:
        return [line for line in handle.read().decode("utf-8").splitlines() if line]


def _input_of(line: str, fmt: str) -> str:
    return json.loads(line)["input"] if fmt == "jsonl" else next(csv.reader([line]))[0]
