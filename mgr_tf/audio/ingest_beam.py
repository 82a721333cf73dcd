"""The audio -> dataset conversion of `mgr_tf.ingest` as an Apache Beam pipeline (`--beam`).

For the full FMA (about 106k tracks) on many machines: each element is one track; a worker decodes
it, computes the features with the same function as the local path (`convert.convert_track`), and
writes both sample files; the records and problems come back as JSON lines, from which the driver
appends the manifest and rewrites the label files exactly as a local run does. Any runner works
(DirectRunner by default; Dataflow, Flink, Spark through ordinary pipeline options) as long as
ROOT and the audio files are on a file system every worker mounts at the same path.

Needs the optional `beam` extra (apache-beam).
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from mgr_tf.audio.convert import LABEL_FORMATS, convert_track
from mgr_tf.audio.tracks import IngestConfig, Problem, Track, label_kind
from mgr_tf.core.cli import quiet_tensorflow
from mgr_tf.core.config import FeatureConfig, from_dict, to_dict


class ConvertTrack(beam.DoFn):
    """Converts one track (as a dict, with its label per task) and emits its outcome as a JSON line.

    Args:
        root: dataset root (a path every worker can write).
        cfg: conversion settings, as a dict (`config.to_dict`).
        fcfg: feature settings, as a dict.
    """

    def __init__(self, root: str, cfg: dict, fcfg: dict):
        super().__init__()
        self.root, self.cfg_dict, self.fcfg_dict = root, cfg, fcfg

    def setup(self):
        quiet_tensorflow()
        self.cfg = from_dict(IngestConfig, self.cfg_dict)
        self.fcfg = from_dict(FeatureConfig, self.fcfg_dict)

    def process(self, element: dict):
        labels = {task: LABEL_FORMATS[label_kind(task)].from_json(label) for task, label in element["labels"].items()}
        track = Track(**{k: v for k, v in element.items() if k != "labels"})
        records, problem = convert_track(track, self.root, labels, self.cfg, self.fcfg)
        if records is not None:
            yield json.dumps({"records": records}, sort_keys=True)
        else:
            yield json.dumps({"problem": [problem.source, problem.kind, problem.reason]})


def run_pipeline(jobs: Sequence[tuple[Track, dict]], root: str | Path, cfg: IngestConfig, fcfg: FeatureConfig,
                 pipeline_args: Sequence[str]) -> tuple[list[dict], list[Problem]]:
    """Runs the conversion of `jobs` ((track, {task: label})) as a Beam pipeline and waits for it.

    Args:
        jobs: tracks still to convert, each with its label per task.
        root: dataset root.
        cfg: conversion settings.
        fcfg: feature settings.
        pipeline_args: Beam pipeline options (e.g. "--runner=DirectRunner").

    Returns:
        ({task: manifest record} per converted track, problems).
    """
    root = Path(root)
    if not jobs:
        return [], []
    args = list(pipeline_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    # Outcomes go through files under ROOT: the only channel that every runner shares with the driver.
    out_dir = root / ".ingest_beam" / uuid.uuid4().hex
    elements = [{"track_id": t.track_id, "path": t.path, "source": t.source, "split": t.split,
                 "labels": {task: LABEL_FORMATS[label_kind(task)].to_json(label) for task, label in labels.items()}}
                for t, labels in jobs]
    # Beam's INFO lines would bury the progress and summary of the conversion.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    options = PipelineOptions(args)
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline
             | "Tracks" >> beam.Create(elements)
             | "Spread" >> beam.Reshuffle()
             | "Convert" >> beam.ParDo(ConvertTrack(str(root), to_dict(cfg), to_dict(fcfg)))
             | "Outcomes" >> beam.io.WriteToText(str(out_dir / "outcomes"), file_name_suffix=".jsonl"))
    records, problems = [], []
    for shard in sorted(out_dir.glob("outcomes*.jsonl")):
        for line in shard.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if "records" in entry:
                records.append(entry["records"])
            else:
                problems.append(Problem(*entry["problem"]))
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    records.sort(key=lambda r: next(iter(r.values()))["id"])
    return records, problems
