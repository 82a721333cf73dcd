"""Audio folder -> dataset layout: `python -m mgr_tf.ingest AUDIO_DIR LABELS... --out ROOT`.

Converts audio files (wav, flac, ogg, mp3; anything `mgr_tf.features.spectral.load_audio` decodes) into
the layout of shared reference section 1, so the TFDS builder and `mgr_tf.data.make_dataset` read
the result unchanged: genre labels give `fma_genre_spectrograms` + `_beat`, emotion labels give
`multitask_dataset` + `_beat`. Every clip gets the full fused features and their beat-synchronous
version (`mgr_tf.audio.clips.clip_features`).

The parts: label files -> tracks with a split (`mgr_tf.audio.labels`), one track -> its sample files
and manifest record (`mgr_tf.audio.convert`, shared with the Beam pipeline in
`mgr_tf.audio.ingest_beam`), and here the run over all tracks, its summary and the command line.

How the work is shared: decoding and resampling an mp3 costs several times more than the features
(about 0.15 s against 0.04 s for a 30 s clip), so worker processes only decode and cut the clip,
and the main process computes the features and writes the files. Workers are forked before
TensorFlow runs its first op, so they inherit the imported modules instead of importing them again.

Resuming: finished clips are listed in `ROOT/ingest_manifest_<task>.jsonl` and skipped on the next
run. Bad files (missing, empty, corrupt, silent, too short) and bad labels (unknown genre, values
outside [0, 1], duplicate ids) are reported with their reason, skipped, counted in the printed
summary and in `ROOT/ingest_summary.json`; bad files are tried again on the next run.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

from mgr_tf.audio.clips import decode_track
from mgr_tf.audio.convert import (
    MANIFEST,
    Manifest,
    convert_or_problem,
    manifest_path,
    outputs_exist,
    read_manifest,
    settings_of,
    write_label_files,
)
from mgr_tf.audio.labels import read_labels
from mgr_tf.audio.tracks import IngestConfig, LabelSet, Problem, Track
from mgr_tf.core.cli import Progress, UserError
from mgr_tf.core.config import FeatureConfig
from mgr_tf.core.io import write_json
from mgr_tf.data import layout

SUMMARY = "ingest_summary.json"
# Problems listed per kind in the summary file (all are counted).
MAX_LISTED = 1000

__all__ = ["MANIFEST", "SUMMARY", "IngestConfig", "ingest", "print_summary", "summarize"]


# ----------------------------------------------------------------------------------------------
# The local (multiprocessing) path.

_WORKER_ARGS: tuple | None = None


def _worker_init(cfg: IngestConfig, fcfg: FeatureConfig) -> None:
    global _WORKER_ARGS
    _WORKER_ARGS = (cfg, fcfg)


def _worker_decode(track: Track):
    cfg, fcfg = _WORKER_ARGS
    clip, problem = decode_track(track, cfg, fcfg)
    return track, clip, problem


def _decoded(tracks: list[Track], cfg: IngestConfig, fcfg: FeatureConfig):
    """Yields (track, clip, problem), decoding in worker processes when asked."""
    workers = cfg.workers or os.cpu_count() or 1
    workers = min(workers, len(tracks))
    if workers <= 1:
        for track in tracks:
            yield (track, *decode_track(track, cfg, fcfg))
        return
    # TensorFlow is imported (through the features) but has run no op yet: forked children share the
    # imported modules and never run TensorFlow themselves. Platforms without fork pay one import per worker.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _worker_init, (cfg, fcfg)) as pool:
        yield from pool.imap_unordered(_worker_decode, tracks, chunksize=1)


def _convert_locally(todo: list[Track], root: Path, task: str, cfg: IngestConfig, fcfg: FeatureConfig,
                     progress: bool, on_record) -> list[Problem]:
    """Converts `todo` with local decoding workers; calls `on_record` per finished clip; returns problems."""
    problems = []
    converted = 0
    with Progress(len(todo), "ingest", "files", enabled=progress) as bar:
        for track, clip, problem in _decoded(todo, cfg, fcfg):
            if problem is None:
                record, problem = convert_or_problem(track, clip, root, task, cfg, fcfg)
                if record is not None:
                    on_record(record)
                    converted += 1
            if problem is not None:
                problems.append(problem)
            bar.update(1, converted=converted, skipped=len(problems))
    return problems


def ingest(audio_dir: str | Path, label_files: Sequence[str | Path], root: str | Path,
           cfg: IngestConfig = IngestConfig(), fcfg: FeatureConfig = FeatureConfig(), *,
           progress: bool = True, beam_args: Sequence[str] | None = None) -> dict:
    """Converts the labelled audio files into the dataset layout under `root` (resumable).

    Args:
        audio_dir: the audio folder.
        label_files: FMA tracks.csv and/or echonest.csv, or one plain CSV.
        root: dataset root to write (created).
        cfg: conversion settings.
        fcfg: feature settings; `clip_seconds` is the clip length.
        progress: progress on stderr (a bar on a terminal, a few lines in a log).
        beam_args: run the conversion as an Apache Beam pipeline with these pipeline options
            (e.g. ["--runner=DirectRunner"]); None = local worker processes.

    Returns:
        The summary (also written to `ROOT/ingest_summary.json`).

    Raises:
        FileNotFoundError, ValueError, UserError: bad input, naming the file.
    """
    start = time.perf_counter()
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    labels = read_labels(audio_dir, label_files, cfg)
    settings = settings_of(labels.task, cfg, fcfg)
    old_settings, done = read_manifest(root, labels.task)
    if old_settings is not None and old_settings != settings:
        diff = sorted(k for k in set(settings) | set(old_settings) if settings.get(k) != old_settings.get(k))
        raise UserError(f"{manifest_path(root, labels.task)}: {root} was converted with other settings "
                        f"({', '.join(diff)}); use a new --out folder or the same settings to resume")
    todo, already = [], 0
    for track in labels.tracks:
        record = done.get(track.track_id)
        if record is not None and outputs_exist(root, labels.task, record, cfg.gz, cfg.encoder):
            already += 1
        else:
            todo.append(track)
    root.mkdir(parents=True, exist_ok=True)
    layout.write_feature_config(root, fcfg)
    problems = list(labels.problems)
    manifest = Manifest(root, settings)
    converted = 0

    def keep(record: dict) -> None:
        nonlocal converted
        manifest.write(record)
        done[record["id"]] = record
        converted += 1

    try:
        if progress:
            names = f", {len(labels.vocabulary)} genres named by the labels" if labels.vocabulary else ""
            print(f"[ingest] {len(labels.tracks)} labelled tracks ({labels.task}{names}): {already} already "
                  f"converted, {len(todo)} to do, {len(labels.problems)} label problems", file=sys.stderr, flush=True)
        if beam_args is not None:
            try:  # Apache Beam is an optional extra, imported only for --beam
                from mgr_tf.audio.ingest_beam import run_pipeline
            except ImportError as exc:
                raise UserError(f"--beam needs Apache Beam (pip install 'mgr_tf[beam]'): {exc}") from None

            records, beam_problems = run_pipeline(todo, root, labels.task, cfg, fcfg, beam_args)
            for record in records:
                keep(record)
            problems.extend(beam_problems)
        elif todo:
            problems.extend(_convert_locally(todo, root, labels.task, cfg, fcfg, progress, keep))
    finally:
        manifest.close()
        # The manifest's settings fix the task, so every record belongs to this task's sub-datasets.
        counts = write_label_files(root, labels.task, done.values(), labels.vocabulary)
    sources = {"audio_dir": str(audio_dir), "labels": [str(p) for p in label_files]}
    return summarize(root, labels, problems, converted, already, counts, time.perf_counter() - start,
                     settings, sources)


def summarize(root: Path, labels: LabelSet, problems: list[Problem], converted: int, already: int,
              counts: dict, seconds: float, settings: dict, sources: dict) -> dict:
    """Builds, writes (`ROOT/ingest_summary.json`) and returns the run summary.

    Args:
        root: dataset root.
        labels: the label set converted.
        problems: every file or label left out.
        converted: clips converted by this run.
        already: clips found converted by an earlier run.
        counts: {sub-dataset: {split: clips}} of the label files written.
        seconds: duration of the run.
        settings: the manifest's settings.
        sources: {"audio_dir", "labels"} as given.
    """
    kinds = Counter(p.kind for p in problems)
    listed = defaultdict(list)
    for p in problems:
        if len(listed[p.kind]) < MAX_LISTED:
            listed[p.kind].append({"source": p.source, "reason": p.reason})
    summary = {"root": str(root), **sources, "task": labels.task, "tracks_listed": len(labels.tracks),
               "vocabulary": list(labels.vocabulary), "converted": converted, "already_converted": already,
               "skipped": dict(sorted(kinds.items())), "skipped_total": len(problems),
               "problems": dict(sorted(listed.items())), "counts": counts, "seconds": round(seconds, 2),
               "clips_per_second": round(converted / seconds, 3) if seconds > 0 and converted else 0.0,
               "settings": settings}
    write_json(root / SUMMARY, summary)
    return summary


def print_summary(summary: dict, file=sys.stderr, per_kind: int = 10) -> None:
    """Prints the summary: counts per sub-dataset and split, and the skipped files by reason.

    Args:
        summary: from `ingest`.
        file: stream to print to.
        per_kind: problems listed per kind (all are in ingest_summary.json).
    """
    for name, splits in summary["counts"].items():
        print(f"{name}: " + ", ".join(f"{s} {n}" for s, n in splits.items()), file=file)
    if summary.get("vocabulary"):
        print(f"genres (listed in genres.txt): {', '.join(summary['vocabulary'])}", file=file)
    print(f"converted {summary['converted']} clips in {summary['seconds']:.1f} s "
          f"({summary['clips_per_second']:.2f} clips/s); {summary['already_converted']} already converted; "
          f"{summary['skipped_total']} skipped", file=file)
    for kind, count in summary["skipped"].items():
        print(f"  skipped {count} x {kind}:", file=file)
        for p in summary["problems"][kind][:per_kind]:
            print(f"    {p['source']}: {p['reason']}", file=file)
        if count > per_kind:
            print(f"    ... ({count - per_kind} more in {Path(summary['root']) / SUMMARY})", file=file)
