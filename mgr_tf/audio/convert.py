"""Conversion of one track into the dataset layout, and the files that make a conversion resumable.

`convert_track` (decode, cut, features, write both samples) is the unit of work of both the local
run (`mgr_tf.audio.ingest`) and the Beam pipeline (`mgr_tf.audio.ingest_beam`); it returns a
manifest record or a `Problem`, never raises for bad files.

Resuming: `ROOT/ingest_manifest_<task>.jsonl` gets one line per finished clip (flushed as it goes);
its first line holds the settings that a resumed run must share. The label files are rewritten from
all the manifest's records at the end of every run (`write_label_files`), with `genres.txt` beside
them when the genre names are not FMA's 20.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mgr_tf.audio.clips import decode_track
from mgr_tf.audio.tracks import LABEL_KEYS, IngestConfig, Problem, Track, label_kind
from mgr_tf.core.config import FeatureConfig, to_dict
from mgr_tf.core.published import GENRES_20
from mgr_tf.data import layout
from mgr_tf.data.readers import VOCABULARY_FILE, id_sort_key
from mgr_tf.features.clips import NonFiniteFeatures, clip_features
from mgr_tf.models import get_feature_type

# One manifest per task, so a root can hold both the genre and the multitask sub-datasets.
MANIFEST = "ingest_manifest_{task}.jsonl"


def _write_vocabulary(folders: list[Path], records: list[dict], vocabulary: Sequence[str]) -> None:
    """Writes `vocabulary` and the genres of `records` to genres.txt in each folder; none when all are FMA's."""
    names = sorted(set(vocabulary) | {r[LABEL_KEYS["genre"]] for r in records})
    for folder in folders:
        path = folder / VOCABULARY_FILE
        if set(names) <= set(GENRES_20):
            path.unlink(missing_ok=True)  # a stale list from an earlier run would override FMA's names
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{name}\n" for name in names))


@dataclass(frozen=True)
class LabelFormat:
    """How the labels of one kind are stored.

    Args:
        to_json: label -> its value in manifest records (and Beam elements).
        from_json: that value -> the label.
        write: (label file, [(track id, label)]) -> writes the label file of one split.
        finish: (sub-dataset folders, all records, vocabulary) -> writes what else the labels need
            (genres.txt).
    """

    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]
    write: Callable[[Path, list[tuple[str, Any]]], Any]
    finish: Callable[[list[Path], list[dict], Sequence[str]], None]


LABEL_FORMATS: dict[str, LabelFormat] = {
    "genre": LabelFormat(str, str, layout.write_genre_labels, _write_vocabulary),
    "emotion": LabelFormat(list, tuple, lambda path, rows: layout.write_emotion_labels(
        path, [(track_id, *values) for track_id, values in rows]), lambda folders, records, vocabulary: None),
}


def convert_clip(track: Track, clip: np.ndarray, root: str | Path, task: str, cfg: IngestConfig,
                 fcfg: FeatureConfig):
    """Computes full and beat-synchronous features of a clip and writes both sample files (and, with
    `cfg.encoder`, the encoder's input beside the full one, written first: a clip is done once its samples are).

    Args:
        track: the track.
        clip: its waveform.
        root: dataset root.
        task: "genre" or "multitask".
        cfg: conversion settings (gz).
        fcfg: feature settings.

    Returns:
        (manifest record dict, None) or (None, Problem).
    """
    try:
        full, beat = clip_features(clip, fcfg)
    except NonFiniteFeatures as exc:
        return None, Problem(track.source, "corrupt", str(exc))
    kind = label_kind(task)
    full_name, beat_name = layout.sub_datasets(kind)
    root = Path(root)
    if cfg.encoder:
        stored = get_feature_type(cfg.encoder).from_audio(clip, fcfg)
        layout.write_sample(root / full_name / track.split, track.track_id, stored.T, cfg.gz, encoder=cfg.encoder)
    layout.write_sample(root / full_name / track.split, track.track_id, full.T, cfg.gz)
    layout.write_sample(root / beat_name / track.split, track.track_id, beat.T, cfg.gz)
    return {"id": track.track_id, "source": track.source, "split": track.split,
            "frames": int(full.shape[0]), "beat_frames": int(beat.shape[0]),
            LABEL_KEYS[kind]: LABEL_FORMATS[kind].to_json(track.label)}, None


def convert_track(track: Track, root: str | Path, task: str, cfg: IngestConfig, fcfg: FeatureConfig):
    """Decode + features + write for one track; any failure comes back as a Problem.

    Args:
        track: the track.
        root: dataset root.
        task: "genre" or "multitask".
        cfg: conversion settings.
        fcfg: feature settings.

    Returns:
        (manifest record dict, None) or (None, Problem).
    """
    clip, problem = decode_track(track, cfg, fcfg)
    if problem is not None:
        return None, problem
    return convert_or_problem(track, clip, root, task, cfg, fcfg)


def convert_or_problem(track: Track, clip: np.ndarray, root: str | Path, task: str, cfg: IngestConfig,
                       fcfg: FeatureConfig):
    """`convert_clip`, with any failure returned as a Problem: one clip must not lose the run's finished work."""
    try:
        return convert_clip(track, clip, root, task, cfg, fcfg)
    except Exception as exc:
        return None, Problem(track.source, "error", f"feature extraction failed ({type(exc).__name__}: {exc})")


# ----------------------------------------------------------------------------------------------
# Manifest and label files.


def settings_of(task: str, cfg: IngestConfig, fcfg: FeatureConfig) -> dict:
    """The settings that must match for a resumed run to add to a root's existing clips.

    Which tracks are listed (workers, FMA subset, genre names) may change between runs: the label
    files are rewritten from all records at the end of each run.

    Args:
        task: the resolved task.
        cfg: conversion settings.
        fcfg: feature settings.
    """
    free = ("workers", "task", "fma_subset", "genre_vocabulary")
    keep = {k: v for k, v in to_dict(cfg).items() if k not in free}
    return {"task": task, **keep, "features": to_dict(fcfg)}


def manifest_path(root: str | Path, task: str) -> Path:
    """`ROOT/ingest_manifest_<task>.jsonl`.

    Args:
        root: dataset root.
        task: "genre" or "multitask".
    """
    return Path(root) / MANIFEST.format(task=task)


def read_manifest(root: str | Path, task: str) -> tuple[dict | None, dict[str, dict]]:
    """(settings, {track id: record}) of a root's manifest; (None, {}) when there is none.

    A truncated last line (a run killed while writing it) is ignored: that clip is redone.

    Args:
        root: dataset root.
        task: "genre" or "multitask".
    """
    path = manifest_path(root, task)
    if not path.is_file():
        return None, {}
    settings, records = None, {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "settings" in entry:
            settings = entry["settings"]
        elif "id" in entry:
            records[entry["id"]] = entry
        else:
            raise ValueError(f"{path}:{line_no}: not a manifest line")
    return settings, records


class Manifest:
    """Appends records to `ROOT/ingest_manifest_<task>.jsonl`, each flushed to disk as it is written.

    Args:
        root: dataset root.
        settings: written as the first line of a new manifest (its "task" names the file).
    """

    def __init__(self, root: str | Path, settings: dict):
        self.path = manifest_path(root, settings["task"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        self.handle = self.path.open("a")
        if new:
            self.write({"settings": settings})

    def write(self, entry: dict) -> None:
        """Appends one JSON line and syncs it."""
        self.handle.write(json.dumps(entry, sort_keys=True) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def outputs_exist(root: Path, task: str, record: dict, gz: bool, encoder: str | None = None) -> bool:
    """Whether both sample files of a manifest record (and its encoder input, if any) are on disk."""
    subs = layout.sub_datasets(label_kind(task))
    names = [(name, layout.sample_name(record["id"], gz)) for name in subs]
    if encoder:
        names.append((subs[0], layout.encoder_sample_name(record["id"], encoder, gz)))  # beside the full sample
    return all((root / name / record["split"] / file).is_file() for name, file in names)


def write_label_files(root: str | Path, task: str, records: Iterable[dict],
                      vocabulary: Sequence[str] = ()) -> dict[str, dict[str, int]]:
    """Rewrites the label files of both sub-datasets of `task` from manifest records (sorted by id).

    Genre names other than FMA's 20 are also listed, sorted, in `genres.txt` of both genre
    sub-datasets, so that readers know the classes (also those whose files all failed).

    Args:
        root: dataset root.
        task: "genre" or "multitask".
        records: manifest records.
        vocabulary: the label files' own genre names (`LabelSet.vocabulary`); () = FMA's 20.

    Returns:
        {sub-dataset: {split: clips}}.
    """
    root = Path(root)
    kind = label_kind(task)
    key, fmt = LABEL_KEYS[kind], LABEL_FORMATS[kind]
    records = sorted(records, key=lambda r: id_sort_key(r["id"]))
    by_split = defaultdict(list)
    for r in records:
        by_split[r["split"]].append(r)
    counts = {}
    names = layout.sub_datasets(kind)
    for name in names:
        counts[name] = {}
        for split in layout.SPLITS:
            rows = by_split.get(split, [])
            counts[name][split] = len(rows)
            if rows:
                fmt.write(root / name / layout.labels_name(split), [(r["id"], fmt.from_json(r[key])) for r in rows])
    fmt.finish([root / name for name in names], records, vocabulary)
    return counts
