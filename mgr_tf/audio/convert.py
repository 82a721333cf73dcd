"""Conversion of one track into the dataset layout, and the files that make a conversion resumable.

`convert_track` (decode, cut, features, write the samples of every kind of label the track has) is the unit of
work of both the local run (`mgr_tf.audio.ingest`) and the Beam pipeline (`mgr_tf.audio.ingest_beam`); it
returns manifest records or a `Problem`, never raises for bad files. A track with a genre and regression
targets gets its arrays computed once, written under the genre sub-datasets and linked (or copied) under the
emotion ones.

Resuming: `ROOT/ingest_manifest_<task>.jsonl` gets one line per finished clip (flushed as it goes); its first
line holds the settings that a resumed run must share. The label files are rewritten from all the manifest's
records at the end of every run (`write_label_files`), merged with the rows of label files already there (a
root made by another run or another tool keeps its labels), with `genres.txt` beside them for the label set's
own genre names and `targets.json` for targets mapped from another scale.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mgr_tf.audio.clips import decode_track
from mgr_tf.audio.tracks import LABEL_KEYS, IngestConfig, Problem, Track, label_kind
from mgr_tf.core.config import FeatureConfig, to_dict
from mgr_tf.core.io import write_json, write_text
from mgr_tf.core.published import EMOTIONS, GENRES_20
from mgr_tf.data import layout
from mgr_tf.data.readers import VOCABULARY_FILE, id_sort_key, read_emotion_labels, read_target_names, track_id_from_name
from mgr_tf.features.clips import NonFiniteFeatures, clip_features
from mgr_tf.models import get_feature_type

# One manifest per task, so a root can hold both the genre and the multitask sub-datasets.
MANIFEST = "ingest_manifest_{task}.jsonl"
TARGET_RANGES_FILE = "targets.json"


@dataclass(frozen=True)
class LabelFormat:
    """How the labels of one kind are stored in manifest records (and Beam elements).

    Args:
        to_json: label -> its value in manifest records.
        from_json: that value -> the label.
    """

    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]


LABEL_FORMATS: dict[str, LabelFormat] = {"genre": LabelFormat(str, str), "emotion": LabelFormat(list, tuple)}


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` as a hard link to `source` (the same bytes, no second copy on disk), else a copy; atomic."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, tmp)
    tmp.replace(target)


def convert_clip(track: Track, clip: np.ndarray, root: str | Path, labels: dict[str, Any], cfg: IngestConfig,
                 fcfg: FeatureConfig):
    """Computes the full and beat-synchronous features of a clip and writes the samples of each task it has a
    label for (and, with `cfg.encoder`, the encoder's input beside each full one, written first: a clip is done
    once its samples are).

    Args:
        track: the track.
        clip: its waveform.
        root: dataset root.
        labels: {task ("genre" or "multitask"): the track's label for it}.
        cfg: conversion settings (gz, encoder).
        fcfg: feature settings.

    Returns:
        ({task: manifest record}, None) or (None, Problem).
    """
    try:
        full, beat = clip_features(clip, fcfg)
    except NonFiniteFeatures as exc:
        return None, Problem(track.source, "corrupt", str(exc))
    root = Path(root)
    stored = get_feature_type(cfg.encoder).from_audio(clip, fcfg) if cfg.encoder else None
    written: dict[str, Path] = {}  # what the first task wrote, linked by the others
    records = {}
    for task, label in labels.items():
        kind = label_kind(task)
        full_name, beat_name = layout.sub_datasets(kind)
        arrays = [("encoder", root / full_name / track.split, stored, cfg.encoder)] if stored is not None else []
        arrays += [("full", root / full_name / track.split, full, None), ("beat", root / beat_name / track.split, beat, None)]
        for what, folder, array, encoder in arrays:
            if what in written:
                _link_or_copy(written[what], folder / written[what].name)
            else:
                written[what] = layout.write_sample(folder, track.track_id, array.T, cfg.gz, encoder=encoder)
        records[task] = {"id": track.track_id, "source": track.source, "split": track.split,
                         "frames": int(full.shape[0]), "beat_frames": int(beat.shape[0]),
                         LABEL_KEYS[kind]: LABEL_FORMATS[kind].to_json(label)}
    return records, None


def convert_track(track: Track, root: str | Path, labels: dict[str, Any], cfg: IngestConfig, fcfg: FeatureConfig):
    """Decode + features + write for one track; any failure comes back as a Problem (see `convert_clip`)."""
    clip, problem = decode_track(track, cfg, fcfg)
    if problem is not None:
        return None, problem
    return convert_or_problem(track, clip, root, labels, cfg, fcfg)


def convert_or_problem(track: Track, clip: np.ndarray, root: str | Path, labels: dict[str, Any], cfg: IngestConfig,
                       fcfg: FeatureConfig):
    """`convert_clip`, with any failure returned as a Problem: one clip must not lose the run's finished work."""
    try:
        return convert_clip(track, clip, root, labels, cfg, fcfg)
    except Exception as exc:
        return None, Problem(track.source, "error", f"feature extraction failed ({type(exc).__name__}: {exc})")


# ----------------------------------------------------------------------------------------------
# Manifest and label files.


def settings_of(task: str, cfg: IngestConfig, fcfg: FeatureConfig, targets: Sequence[str] = ()) -> dict:
    """The settings that must match for a resumed run to add to a root's existing clips.

    Which tracks are listed (workers, FMA subset, genre names) may change between runs: the label
    files are rewritten from all records at the end of each run.

    Args:
        task: "genre" or "multitask".
        cfg: conversion settings.
        fcfg: feature settings.
        targets: the regression targets (multitask), in the order of the records' values.
    """
    free = ("workers", "task", "fma_subset", "genre_vocabulary", "targets", "target_range")
    keep = {k: v for k, v in to_dict(cfg).items() if k not in free}
    extra = {"targets": list(targets), "target_ranges": {k: list(v) for k, v in cfg.ranges().items() if k in targets}
             } if label_kind(task) == "emotion" else {}
    return {"task": task, **keep, "features": to_dict(fcfg), **extra}


def manifest_path(root: str | Path, task: str) -> Path:
    """`ROOT/ingest_manifest_<task>.jsonl`.

    Args:
        root: dataset root.
        task: "genre" or "multitask".
    """
    return Path(root) / MANIFEST.format(task=task)


def read_manifest(root: str | Path, task: str) -> tuple[dict | None, dict[str, dict]]:
    """(settings, {track id: record}) of a root's manifest; (None, {}) when there is none.

    A truncated last line (a run killed while writing it) is ignored: that clip is redone. Settings written
    before regression targets came from the data name none: theirs are the published three.

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
    if settings is not None and label_kind(task) == "emotion":
        settings.setdefault("targets", list(EMOTIONS))
        settings.setdefault("target_ranges", {})
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
        new = not self.path.is_file() or not self.path.stat().st_size
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


def _kept_rows(sub: Path, split: str, kind: str, targets: Sequence[str]) -> dict[str, Any]:
    """{track id: label} of a split's label file already in the root (written by another run or tool), for the
    rows whose sample file is there; {} without a label file.

    Raises:
        ValueError: the existing file names other regression targets than these labels.
    """
    path = sub / layout.labels_name(split)
    if not path.is_file():
        return {}
    if kind == "genre":
        lines = [line.split("\t") for line in path.read_text(encoding="utf-8-sig").splitlines()[1:] if line.strip()]
        rows = {name.strip(): genre.strip() for name, genre in (parts for parts in lines if len(parts) == 2)}
    else:
        existing = read_target_names(path)
        if tuple(existing) != tuple(targets):
            raise ValueError(f"{path}: names the targets {list(existing)}; these labels name {list(targets)} "
                             "(use another --out, or labels with the same target columns)")
        rows = {track_id: values for _, track_id, values in read_emotion_labels(path, skip_bad=True)[0]}
    rows = {track_id_from_name(name): label for name, label in rows.items()}
    folder = sub / split
    return {t: label for t, label in rows.items()
            if any((folder / layout.sample_name(t, gz)).is_file() for gz in (False, True))}


def write_label_files(root: str | Path, task: str, records: Iterable[dict], vocabulary: Sequence[str] = (),
                      targets: Sequence[str] = EMOTIONS, ranges: dict | None = None) -> dict[str, dict[str, int]]:
    """Rewrites the label files of both sub-datasets of `task`: the manifest's records merged with the rows of the
    label files already there (the records win), sorted by id.

    A label set's own genre names (with those of the rows kept) are listed, sorted, in `genres.txt` of both genre
    sub-datasets, so that readers know the classes (also those whose files all failed); targets mapped from
    another scale are recorded in `targets.json` of both emotion sub-datasets.

    Args:
        root: dataset root.
        task: "genre" or "multitask".
        records: manifest records.
        vocabulary: the label files' own genre names (`LabelSet.vocabulary`); () = FMA's 20.
        targets: the regression targets (multitask), in the order of the records' values.
        ranges: {target: (lo, hi)} of targets mapped to [0, 1].

    Returns:
        {sub-dataset: {split: clips}}.
    """
    root = Path(root)
    kind = label_kind(task)
    key, fmt = LABEL_KEYS[kind], LABEL_FORMATS[kind]
    records = list(records)
    names = layout.sub_datasets(kind)
    counts = {name: {} for name in names}
    labels_of = {r["id"]: (r["split"], fmt.from_json(r[key])) for r in records}
    genres = set(vocabulary)
    for split in layout.SPLITS:
        kept = {}
        for name in names:  # the full and beat copies hold the same clips
            kept.update({t: label for t, label in _kept_rows(root / name, split, kind, targets).items()
                         if t not in labels_of})
        rows = sorted([(t, label) for t, (s, label) in labels_of.items() if s == split] + list(kept.items()),
                      key=lambda row: id_sort_key(row[0]))
        for name in names:
            counts[name][split] = len(rows)
            if not rows:
                continue
            path = root / name / layout.labels_name(split)
            if kind == "genre":
                layout.write_genre_labels(path, rows)
            else:
                layout.write_emotion_labels(path, [(t, *values) for t, values in rows], targets)
        if kind == "genre":
            genres |= {label for _, label in rows}
    for name in names:
        folder = root / name
        if kind == "genre" and (vocabulary or not genres <= set(GENRES_20) or (folder / VOCABULARY_FILE).is_file()):
            folder.mkdir(parents=True, exist_ok=True)
            write_text(folder / VOCABULARY_FILE, "".join(f"{g}\n" for g in sorted(genres)))
        if kind == "emotion" and ranges:
            write_json(folder / TARGET_RANGES_FILE, {t: {"min": lo, "max": hi} for t, (lo, hi) in ranges.items()})
    return counts
