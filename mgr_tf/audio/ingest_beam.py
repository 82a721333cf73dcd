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
    """Converts one `Track` (as a dict) and emits its outcome as a JSON line.

    Args:
        root: dataset root (a path every worker can write).
        task: "genre" or "multitask".
        cfg: conversion settings, as a dict (`config.to_dict`).
        fcfg: feature settings, as a dict.
    """

    def __init__(self, root: str, task: str, cfg: dict, fcfg: dict):
        super().__init__()
        self.root, self.task, self.cfg_dict, self.fcfg_dict = root, task, cfg, fcfg

    def setup(self):
        quiet_tensorflow()
        self.cfg = from_dict(IngestConfig, self.cfg_dict)
        self.fcfg = from_dict(FeatureConfig, self.fcfg_dict)
        self.label_format = LABEL_FORMATS[label_kind(self.task)]

    def process(self, element: dict):
        track = Track(**{**element, "label": self.label_format.from_json(element["label"])})
        record, problem = convert_track(track, self.root, self.task, self.cfg, self.fcfg)
        if record is not None:
            yield json.dumps({"record": record}, sort_keys=True)
        else:
            yield json.dumps({"problem": [problem.source, problem.kind, problem.reason]})


def run_pipeline(tracks: Sequence[Track], root: str | Path, task: str, cfg: IngestConfig, fcfg: FeatureConfig,
                 pipeline_args: Sequence[str]) -> tuple[list[dict], list[Problem]]:
    """Runs the conversion of `tracks` as a Beam pipeline and waits for it.

    Args:
        tracks: tracks still to convert.
        root: dataset root.
        task: "genre" or "multitask".
        cfg: conversion settings.
        fcfg: feature settings.
        pipeline_args: Beam pipeline options (e.g. "--runner=DirectRunner").

    Returns:
        (manifest records, problems) of the converted tracks.
    """
    root = Path(root)
    if not tracks:
        return [], []
    args = list(pipeline_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    # Outcomes go through files under ROOT: the only channel that every runner shares with the driver.
    out_dir = root / ".ingest_beam" / uuid.uuid4().hex
    to_json = LABEL_FORMATS[label_kind(task)].to_json
    elements = [{"track_id": t.track_id, "path": t.path, "source": t.source, "split": t.split,
                 "label": to_json(t.label)} for t in tracks]
    # Beam's INFO lines would bury the progress and summary of the conversion.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    options = PipelineOptions(args)
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline
             | "Tracks" >> beam.Create(elements)
             | "Spread" >> beam.Reshuffle()
             | "Convert" >> beam.ParDo(ConvertTrack(str(root), task, to_dict(cfg), to_dict(fcfg)))
             | "Outcomes" >> beam.io.WriteToText(str(out_dir / "outcomes"), file_name_suffix=".jsonl"))
    records, problems = [], []
    for shard in sorted(out_dir.glob("outcomes*.jsonl")):
        for line in shard.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if "record" in entry:
                records.append(entry["record"])
            else:
                problems.append(Problem(*entry["problem"]))
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    records.sort(key=lambda r: r["id"])
    return records, problems
