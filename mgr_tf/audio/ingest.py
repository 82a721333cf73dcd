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

import dataclasses
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
from mgr_tf.audio.tracks import AUTO, IngestConfig, LabelSet, Problem, Track
from mgr_tf.core.cli import Progress, UserError
from mgr_tf.core.config import FeatureConfig
from mgr_tf.core.io import locked, write_json
from mgr_tf.data import layout

SUMMARY = "ingest_summary.json"
LOCK = ".ingest.lock"
# The encoder input stored by default (where audio exists, the pretrained encoder is the default model).
DEFAULT_ENCODER = "musicnn"
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


def _convert_locally(todo: list[tuple[Track, dict]], root: Path, cfg: IngestConfig, fcfg: FeatureConfig,
                     progress: bool, on_records) -> list[Problem]:
    """Converts `todo` ((track, {task: label})) with local decoding workers; calls `on_records` per finished clip;
    returns the problems."""
    labels_of = {track.track_id: labels for track, labels in todo}
    problems = []
    converted = 0
    with Progress(len(todo), "ingest", "files", enabled=progress) as bar:
        for track, clip, problem in _decoded([track for track, _ in todo], cfg, fcfg):
            if problem is None:
                records, problem = convert_or_problem(track, clip, root, labels_of[track.track_id], cfg, fcfg)
                if records is not None:
                    on_records(records)
                    converted += 1
            if problem is not None:
                problems.append(problem)
            bar.update(1, converted=converted, skipped=len(problems))
    return problems


def _resolved_encoder(root: Path, label_sets: list[LabelSet], cfg: IngestConfig) -> IngestConfig:
    """`cfg` with `encoder` "auto" decided: the encoder a root being resumed was converted with, else musicnn."""
    if cfg.encoder != AUTO:
        return cfg
    for labels in label_sets:
        old, _ = read_manifest(root, labels.task)
        if old is not None:
            return dataclasses.replace(cfg, encoder=old.get("encoder"))
    return dataclasses.replace(cfg, encoder=DEFAULT_ENCODER)


def ingest(audio_dir: str | Path, label_files: Sequence[str | Path], root: str | Path,
           cfg: IngestConfig = IngestConfig(), fcfg: FeatureConfig = FeatureConfig(), *,
           progress: bool = True, beam_args: Sequence[str] | None = None) -> dict:
    """Converts the labelled audio files into the dataset layout under `root` (resumable).

    Every kind of label the files hold (genre, regression targets) is converted in one pass over the audio.
    Into a root that holds data already, the new clips are merged: the rows of its label files stay. Two ingests
    into one root take turns (a lock on `ROOT/.ingest.lock`).

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
    label_sets = read_labels(audio_dir, label_files, cfg)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / LOCK, f"the dataset root {root}"):
        return _ingest_locked(audio_dir, label_files, root, label_sets, _resolved_encoder(root, label_sets, cfg),
                              fcfg, progress, beam_args, start)


def _ingest_locked(audio_dir, label_files, root: Path, label_sets: list[LabelSet], cfg: IngestConfig,
                   fcfg: FeatureConfig, progress: bool, beam_args, start: float) -> dict:
    settings, done, manifests = {}, {}, {}
    todo: dict[str, tuple[Track, dict]] = {}
    already = {}
    for labels in label_sets:
        task = labels.task
        settings[task] = settings_of(task, cfg, fcfg, labels.targets)
        old_settings, done[task] = read_manifest(root, task)
        if old_settings is not None and old_settings != settings[task]:
            diff = sorted(k for k in set(settings[task]) | set(old_settings)
                          if settings[task].get(k) != old_settings.get(k))
            raise UserError(f"{manifest_path(root, task)}: {root} was converted with other settings "
                            f"({', '.join(diff)}); use a new --out folder or the same settings to resume")
        already[task] = 0
        for track in labels.tracks:
            record = done[task].get(track.track_id)
            if record is not None and outputs_exist(root, task, record, cfg.gz, cfg.encoder):
                already[task] += 1
            else:
                todo.setdefault(track.track_id, (track, {}))[1][task] = track.label
    layout.write_feature_config(root, fcfg)
    problems = list(dict.fromkeys(p for labels in label_sets for p in labels.problems))  # a line bad for both once
    for labels in label_sets:
        manifests[labels.task] = Manifest(root, settings[labels.task])
    converted = 0

    def keep(records: dict) -> None:
        nonlocal converted
        for task, record in records.items():
            manifests[task].write(record)
            done[task][record["id"]] = record
        converted += 1

    try:
        if progress:
            for labels in label_sets:
                names = (f", {len(labels.vocabulary)} genres named by the labels" if labels.vocabulary else
                         f", targets {', '.join(labels.targets)}" if labels.targets else "")
                print(f"[ingest] {labels.task}: {len(labels.tracks)} labelled tracks{names}; {already[labels.task]} "
                      f"already converted", file=sys.stderr, flush=True)
            print(f"[ingest] {len(todo)} files to convert, {len(problems)} label problems", file=sys.stderr, flush=True)
            for note in label_sets[0].notes:
                print(f"[ingest] {note}", file=sys.stderr, flush=True)
        jobs = list(todo.values())
        if beam_args is not None:
            try:  # Apache Beam is an optional extra, imported only for --beam
                from mgr_tf.audio.ingest_beam import run_pipeline
            except ImportError as exc:
                raise UserError(f"--beam needs Apache Beam (pip install 'mgr_tf[beam]'): {exc}") from None

            outcomes, beam_problems = run_pipeline(jobs, root, cfg, fcfg, beam_args)
            for records in outcomes:
                keep(records)
            problems.extend(beam_problems)
        elif jobs:
            problems.extend(_convert_locally(jobs, root, cfg, fcfg, progress, keep))
    finally:
        for manifest in manifests.values():
            manifest.close()
        counts = {}
        for labels in label_sets:
            counts.update(write_label_files(root, labels.task, done[labels.task].values(), labels.vocabulary,
                                            labels.targets, labels.ranges))
    sources = {"audio_dir": str(audio_dir), "labels": [str(p) for p in label_files]}
    listed = {t.track_id for labels in label_sets for t in labels.tracks}
    return summarize(root, label_sets, problems, converted, len(listed) - len(todo), counts,
                     time.perf_counter() - start, settings, sources)


def summarize(root: Path, label_sets: list[LabelSet], problems: list[Problem], converted: int, already: int,
              counts: dict, seconds: float, settings: dict, sources: dict) -> dict:
    """Builds, writes (`ROOT/ingest_summary.json`) and returns the run summary.

    Args:
        root: dataset root.
        label_sets: the label sets converted (one per kind of label).
        problems: every file or label left out.
        converted: clips converted by this run.
        already: clips found converted by an earlier run.
        counts: {sub-dataset: {split: clips}} of the label files written.
        seconds: duration of the run.
        settings: {task: the manifest's settings}.
        sources: {"audio_dir", "labels"} as given.
    """
    kinds = Counter(p.kind for p in problems)
    listed = defaultdict(list)
    for p in problems:
        if len(listed[p.kind]) < MAX_LISTED:
            listed[p.kind].append({"source": p.source, "reason": p.reason})
    first = label_sets[0]
    vocabulary = next((list(s.vocabulary) for s in label_sets if s.vocabulary), [])
    targets = next((list(s.targets) for s in label_sets if s.targets), [])
    summary = {"root": str(root), **sources, "task": "+".join(s.task for s in label_sets),
               "tracks_listed": len({t.track_id for s in label_sets for t in s.tracks}),
               "vocabulary": vocabulary, "targets": targets, "notes": list(first.notes),
               "converted": converted, "already_converted": already,
               "skipped": dict(sorted(kinds.items())), "skipped_total": len(problems),
               "problems": dict(sorted(listed.items())), "counts": counts, "seconds": round(seconds, 2),
               "clips_per_second": round(converted / seconds, 3) if seconds > 0 and converted else 0.0,
               "settings": settings if len(settings) > 1 else next(iter(settings.values()))}
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
    if summary.get("targets"):
        print(f"regression targets: {', '.join(summary['targets'])}", file=file)
    for note in summary.get("notes", ()):
        print(f"  left out: {note}", file=file)
    print(f"converted {summary['converted']} clips in {summary['seconds']:.1f} s "
          f"({summary['clips_per_second']:.2f} clips/s); {summary['already_converted']} already converted; "
          f"{summary['skipped_total']} skipped", file=file)
    for kind, count in summary["skipped"].items():
        print(f"  skipped {count} x {kind}:", file=file)
        for p in summary["problems"][kind][:per_kind]:
            print(f"    {p['source']}: {p['reason']}", file=file)
        if count > per_kind:
            print(f"    ... ({count - per_kind} more in {Path(summary['root']) / SUMMARY})", file=file)
