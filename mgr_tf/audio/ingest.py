"""Audio folder -> dataset layout: `python -m mgr_tf.ingest AUDIO_DIR LABELS... --out ROOT`.

Converts audio files (wav, flac, ogg, mp3; anything `mgr_tf.features.load_audio` decodes) into the
layout of shared reference section 1, so the TFDS builder and `mgr_tf.data.make_dataset` read the
result unchanged: genre labels give `fma_genre_spectrograms` + `_beat`, emotion labels give
`multitask_dataset` + `_beat`. Every clip gets the full fused features (`features.fused_features`)
and their beat-synchronous version (`features.beat_sync`).

Labels come from the FMA metadata as published with the audio (Defferrard et al., "FMA: A Dataset
for Music Analysis", ISMIR 2017): `tracks.csv` (genre and the `set.split` / `set.subset` columns;
audio at `<AUDIO_DIR>/<first 3 digits>/<6-digit id>.mp3`) and `echonest.csv` (valence, energy,
danceability), or from a plain CSV `path,genre` / `path,valence,energy,danceability` (paths
relative to AUDIO_DIR; optional `id` and `split` columns).

How the work is shared: decoding and resampling an mp3 costs several times more than the features
(about 0.15 s against 0.04 s for a 30 s clip), so worker processes only decode and cut the clip,
and the main process computes the features and writes the files. Workers are forked before
TensorFlow runs its first op, so they inherit the imported modules instead of importing them again.
`--beam` runs the same per-track functions as an Apache Beam pipeline (`mgr_tf.ingest_beam`).

Resuming: `ROOT/ingest_manifest_<task>.jsonl` gets one line per finished clip (flushed as it
goes), and already listed clips are skipped on the next run; the label files are rewritten from the manifest
at the end of every run. Bad files (missing, empty, corrupt, silent, too short) and bad labels
(unknown genre, values outside [0, 1], duplicate ids) are reported with their reason, skipped,
counted in the printed summary and in `ROOT/ingest_summary.json`; bad files are tried again on the
next run.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mgr_tf.data import layout
from mgr_tf.cli import UserError, quiet_tensorflow, run_cli
from mgr_tf.config import FeatureConfig, to_dict
from mgr_tf.genres import EMOTIONS, GENRES_20
from mgr_tf.data.readers import id_sort_key

# One manifest per task, so a root can hold both the genre and the multitask sub-datasets.
MANIFEST = "ingest_manifest_{task}.jsonl"
SUMMARY = "ingest_summary.json"
TASKS = ("auto", "genre", "multitask")
CLIP_MODES = ("centre", "first", "pad")
FMA_SUBSETS = ("small", "medium", "large", "full")
AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg")
# FMA's set.split values -> the two splits of the layout.
FMA_SPLITS = {"training": "train", "validation": "train", "test": "test"}
# Files this much shorter than the clip are kept at their length by default: FMA's 30 s previews
# decode to 29.9..30.0 s (the published arrays have 1291..1293 frames).
SHORT_TOLERANCE_SECONDS = 1.0
# Problems listed per kind in the summary file (all are counted).
MAX_LISTED = 1000


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one conversion (the clip length is `FeatureConfig.clip_seconds`).

    Args:
        task: genre, multitask (emotion labels) or auto (from the label files).
        clip: which part of each file becomes the clip: centre (default), first (the first
            clip_seconds) or pad (centre for long files; short files zero-padded at the end).
        min_seconds: shortest file kept without padding, in seconds; files between this and the clip
            length give shorter arrays. None = the clip length less 1 s (at most half the clip), so
            FMA's 29.9 s previews pass; shorter files are "too short".
        silence_db: a clip whose peak is below this level (dBFS) is "silent" and skipped.
        test_fraction: share of each genre (or of all emotion clips) put in the test split when the
            labels carry no split.
        seed: seed of the hash that decides the split.
        gz: write gzip-compressed `.npy.gz` samples instead of `.npy`.
        workers: decoding processes; 0 = one per CPU core, 1 = decode in the main process.
        fma_subset: with FMA tracks.csv, keep only tracks of this subset (small, medium, large, full;
            each includes the smaller ones).
    """

    task: str = "auto"
    clip: str = "centre"
    min_seconds: float | None = None
    silence_db: float = -60.0
    test_fraction: float = 0.2
    seed: int = 0
    gz: bool = False
    workers: int = 0
    fma_subset: str | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.clip not in CLIP_MODES:
            raise ValueError(f"clip must be one of {CLIP_MODES}, got {self.clip!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test fraction must be in [0, 1), got {self.test_fraction}")
        if self.min_seconds is not None and self.min_seconds <= 0:
            raise ValueError(f"min seconds must be positive, got {self.min_seconds}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.fma_subset is not None and self.fma_subset not in FMA_SUBSETS:
            raise ValueError(f"FMA subset must be one of {FMA_SUBSETS}, got {self.fma_subset!r}")


@dataclass(frozen=True)
class Track:
    """One audio file to convert.

    Args:
        track_id: the id used in file names and label files.
        path: the audio file (absolute).
        source: the path as reported (relative to AUDIO_DIR where possible).
        split: "train" or "test".
        genre: one of the 20 genre names (genre task), else None.
        emotions: (valence, energy, danceability) in [0, 1] (multitask), else None.
    """

    track_id: str
    path: str
    source: str
    split: str
    genre: str | None = None
    emotions: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Problem:
    """A file or label line left out, with its reason.

    Args:
        source: the audio file or "labels.csv:LINE".
        kind: short category counted in the summary (e.g. "corrupt", "too short").
        reason: what was wrong, in words.
    """

    source: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class LabelSet:
    """The tracks of the label files.

    Args:
        task: "genre" or "multitask".
        tracks: tracks to convert, with their split decided.
        problems: label-level problems (unknown genre, missing audio file, ...).
    """

    task: str
    tracks: tuple[Track, ...]
    problems: tuple[Problem, ...]


# ----------------------------------------------------------------------------------------------
# Labels.


def _hash_unit(seed: int, track_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{track_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(ids_and_strata: Sequence[tuple[str, str]], test_fraction: float, seed: int) -> dict[str, str]:
    """Deterministic, stratified train/test split by a seeded hash of each track id.

    Within each stratum the ids are ordered by `sha256(seed:id)` and the first
    `max(1, round(test_fraction * n))` go to test (none for strata of fewer than two tracks or a
    zero fraction). The result depends only on the label list and the seed, never on which audio
    files turn out to be bad.

    Args:
        ids_and_strata: (track id, stratum) pairs, e.g. the genre as stratum.
        test_fraction: share of each stratum put in test.
        seed: hash seed.

    Returns:
        {track id: "train" | "test"}.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for track_id, stratum in ids_and_strata:
        groups[stratum].append(track_id)
    splits = {}
    for members in groups.values():
        members = sorted(members, key=lambda t: (_hash_unit(seed, t), t))
        n_test = 0 if len(members) < 2 or test_fraction <= 0 else max(1, int(round(test_fraction * len(members))))
        for i, track_id in enumerate(members):
            splits[track_id] = "test" if i < n_test else "train"
    return splits


def _sniff(path: Path) -> str:
    """The label file format: "tracks", "echonest" or "plain"."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for _, row in zip(range(4), csv.reader(handle))]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({exc.reason})") from None
    if not rows:
        raise ValueError(f"{path}: empty label file")
    first = [c.strip().lower() for c in rows[0]]
    if first and first[0] == "" and "echonest" in first:
        return "echonest"
    if first and first[0] == "" and "track" in first:
        return "tracks"
    return "plain"


def _read_fma(path: Path, header_rows: int):
    try:
        import pandas as pd
    except ImportError:
        raise UserError(f"{path}: reading FMA metadata needs pandas (pip install pandas)") from None

    try:
        frame = pd.read_csv(path, index_col=0, header=list(range(header_rows)), low_memory=False)
    except Exception as exc:  # pandas raises parser errors of several types
        raise ValueError(f"{path}: cannot read as an FMA metadata CSV with {header_rows} header rows "
                         f"({type(exc).__name__}: {exc})") from None
    return frame


def _column(frame, path: Path, key: tuple[str, ...]):
    if key not in frame.columns:
        raise ValueError(f"{path}: missing column {'.'.join(key)} (expected the FMA metadata layout)")
    return frame[key]


def fma_audio_path(audio_dir: Path, track_id: int) -> Path | None:
    """The audio file of an FMA track: `<audio_dir>/<000>/<000123>.mp3` (other extensions accepted).

    Args:
        audio_dir: the fma_* audio folder.
        track_id: the FMA track id.

    Returns:
        The existing file, or None.
    """
    name = f"{track_id:06d}"
    for ext in AUDIO_EXTENSIONS:
        candidate = audio_dir / name[:3] / (name + ext)
        if candidate.is_file():
            return candidate
    return None


def _fma_genre_titles(tracks_csv: Path) -> dict[int, str]:
    """genre id -> title from `genres.csv` beside tracks.csv (empty if absent)."""
    genres_csv = tracks_csv.with_name("genres.csv")
    if not genres_csv.is_file():
        return {}
    import pandas as pd

    frame = pd.read_csv(genres_csv, index_col=0)
    if "title" not in frame.columns:
        raise ValueError(f"{genres_csv}: missing column 'title' (expected FMA's genres.csv)")
    return {int(k): str(v) for k, v in frame["title"].items()}


def _fma_genre(top, direct, titles: dict[int, str]) -> str | None:
    """Picks one of the 20 known names: a known direct sub-genre first, else the top genre."""
    known = []
    if titles and isinstance(direct, str) and direct.startswith("["):
        known = [titles.get(int(g)) for g in ast.literal_eval(direct)]
        known = [g for g in known if g in GENRES_20]
    top = top if isinstance(top, str) else None
    specific = [g for g in known if g != top]
    if specific:
        return specific[0]
    return top


def _plain_track_id(source: str) -> str:
    name = Path(source).name
    for ext in AUDIO_EXTENSIONS:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return _safe_id(name)


def _safe_id(text: str) -> str:
    """`text` with every character outside [A-Za-z0-9_.-] replaced by "_" (a usable file name stem)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _read_plain(path: Path, audio_dir: Path):
    """Rows {id, source, path, genre | emotions, split, line} of a plain CSV, and problems."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}:1: empty label file (expected the header 'path,genre' or "
                             f"'path,valence,energy,danceability')")
        columns = [c.strip().lower() for c in header]
        if "path" not in columns:
            raise ValueError(f"{path}:1: expected a header with a 'path' column ('path,genre' or "
                             f"'path,valence,energy,danceability'), got {','.join(header)!r}")
        has_genre = "genre" in columns
        has_emotions = all(e in columns for e in EMOTIONS)
        if not has_genre and not has_emotions:
            raise ValueError(f"{path}:1: header needs 'genre' or all of {', '.join(EMOTIONS)}, got "
                             f"{','.join(header)!r}")
        rows, problems = [], []
        for line_no, raw in enumerate(reader, start=2):
            if not raw or not any(c.strip() for c in raw):
                continue
            where = f"{path}:{line_no}"
            if len(raw) != len(columns):
                problems.append(Problem(where, "bad label", f"expected {len(columns)} fields, got {len(raw)}"))
                continue
            row = dict(zip(columns, (c.strip() for c in raw)))
            source = row["path"]
            entry = {"source": source, "path": audio_dir / source, "line": where,
                     "id": _safe_id(row["id"]) if row.get("id") else _plain_track_id(source),
                     "split": row.get("split") or None}
            if entry["split"] not in (None, "train", "test"):
                problems.append(Problem(where, "bad label", f"split {entry['split']!r} is not train or test"))
                continue
            if has_genre:
                entry["genre"] = row["genre"]
            if has_emotions:
                try:
                    entry["emotions"] = tuple(float(row[e]) for e in EMOTIONS)
                except ValueError:
                    problems.append(Problem(where, "bad label", "emotion values must be numbers"))
                    continue
            rows.append(entry)
    return rows, has_genre, has_emotions, problems


def read_labels(audio_dir: str | Path, label_files: Sequence[str | Path], cfg: IngestConfig) -> LabelSet:
    """Reads the label files into tracks with a decided split.

    Formats: FMA `tracks.csv` (3 header rows; genre from `track.genre_top`, or a known direct
    sub-genre from `track.genres` when FMA's `genres.csv` lies beside it; split from `set.split`)
    and `echonest.csv` (4 header rows; `echonest.audio_features.{valence,energy,danceability}`),
    given alone or together (then tracks.csv gives the split and subset of the echonest tracks),
    or one plain CSV (`path,genre` or `path,valence,energy,danceability`, optional `id`, `split`).
    Genres outside the 20 known names are reported ("unknown genre") and skipped.

    Args:
        audio_dir: folder the audio paths are relative to (the fma_* folder for FMA metadata).
        label_files: one or two label files.
        cfg: conversion settings (task, split fraction and seed, FMA subset).

    Raises:
        FileNotFoundError: a label file or the audio folder is missing.
        ValueError: unreadable label file, or a task the labels cannot give (naming the file).
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"{audio_dir}: audio folder not found")
    paths = [Path(p) for p in label_files]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: label file not found")
    kinds = {p: _sniff(p) for p in paths}
    plain = [p for p in paths if kinds[p] == "plain"]
    if plain and len(paths) > 1:
        raise ValueError(f"{plain[0]}: a plain CSV must be the only label file")
    if plain:
        return _labels_from_plain(plain[0], audio_dir, cfg)
    by_kind = defaultdict(list)
    for p in paths:
        by_kind[kinds[p]].append(p)
    for kind, files in by_kind.items():
        if len(files) > 1:
            raise ValueError(f"{files[1]}: a second FMA {kind}.csv file (give each at most once)")
    return _labels_from_fma(by_kind.get("tracks", [None])[0], by_kind.get("echonest", [None])[0], audio_dir, cfg)


def _resolve_task(cfg: IngestConfig, can_genre: bool, can_emotion: bool, where: Path) -> str:
    task = cfg.task
    if task == "auto":
        task = "multitask" if can_emotion else "genre"
    if task == "genre" and not can_genre:
        raise ValueError(f"{where}: --task genre needs genre labels (a 'genre' column or FMA tracks.csv)")
    if task == "multitask" and not can_emotion:
        raise ValueError(f"{where}: --task multitask needs valence, energy and danceability "
                         f"(plain CSV columns or FMA echonest.csv)")
    return task


def _check_label(task: str, genre, emotions) -> tuple[str, str] | None:
    """(kind, reason) when a label is unusable, else None."""
    if task == "genre":
        if not genre:
            return "no label", "no genre"
        if genre not in GENRES_20:
            return "unknown genre", f"genre {genre!r} is not one of the 20 known genres"
        return None
    if emotions is None or any(not (isinstance(v, float) and 0.0 <= v <= 1.0) for v in emotions):
        return "bad label", f"emotion values {emotions} not all in [0, 1]"
    return None


def _finish_tracks(task: str, entries: list[dict], problems: list[Problem], cfg: IngestConfig) -> LabelSet:
    """Checks labels and duplicate ids, then decides the split of entries that carry none."""
    kept, seen = [], {}
    for e in entries:
        bad = _check_label(task, e.get("genre"), e.get("emotions"))
        if bad:
            problems.append(Problem(e["line"], *bad))
            continue
        if e["id"] in seen:
            problems.append(Problem(e["line"], "duplicate id", f"track id {e['id']!r} already used by {seen[e['id']]}"))
            continue
        seen[e["id"]] = e["source"]
        kept.append(e)
    free = [(e["id"], e.get("genre") or "all") for e in kept if not e.get("split")]
    decided = assign_splits(free, cfg.test_fraction, cfg.seed)
    tracks = tuple(Track(e["id"], str(Path(e["path"]).resolve()), e["source"], e.get("split") or decided[e["id"]],
                         genre=e.get("genre") if task == "genre" else None,
                         emotions=e.get("emotions") if task == "multitask" else None) for e in kept)
    return LabelSet(task, tracks, tuple(problems))


def _labels_from_plain(path: Path, audio_dir: Path, cfg: IngestConfig) -> LabelSet:
    rows, has_genre, has_emotions, problems = _read_plain(path, audio_dir)
    task = _resolve_task(cfg, has_genre, has_emotions, path)
    return _finish_tracks(task, rows, problems, cfg)


def _labels_from_fma(tracks_csv: Path | None, echonest_csv: Path | None, audio_dir: Path,
                     cfg: IngestConfig) -> LabelSet:
    task = _resolve_task(cfg, tracks_csv is not None, echonest_csv is not None, tracks_csv or echonest_csv)
    problems: list[Problem] = []
    meta: dict[int, dict] = {}
    if tracks_csv is not None:
        frame = _read_fma(tracks_csv, 2)
        top = _column(frame, tracks_csv, ("track", "genre_top"))
        direct = frame[("track", "genres")] if ("track", "genres") in frame.columns else None
        split = frame[("set", "split")] if ("set", "split") in frame.columns else None
        subset = frame[("set", "subset")] if ("set", "subset") in frame.columns else None
        titles = _fma_genre_titles(tracks_csv)
        allowed = None
        if cfg.fma_subset and cfg.fma_subset != "full":
            if subset is None:
                raise ValueError(f"{tracks_csv}: --fma-subset needs the set.subset column")
            allowed = set(FMA_SUBSETS[: FMA_SUBSETS.index(cfg.fma_subset) + 1])
        for tid in frame.index:
            tid = int(tid)
            if allowed is not None and subset[tid] not in allowed:
                continue
            meta[tid] = {"genre": _fma_genre(top[tid], direct[tid] if direct is not None else None, titles),
                         "split": FMA_SPLITS.get(split[tid]) if split is not None else None}
    emotions: dict[int, tuple] = {}
    if echonest_csv is not None:
        frame = _read_fma(echonest_csv, 3)
        cols = [_column(frame, echonest_csv, ("echonest", "audio_features", e)) for e in EMOTIONS]
        for tid in frame.index:
            emotions[int(tid)] = tuple(float(c[tid]) for c in cols)
    if task == "multitask":
        ids = [t for t in emotions if tracks_csv is None or t in meta]
        where = echonest_csv
    else:
        ids = list(meta)
        where = tracks_csv
    entries = []
    for tid in ids:
        audio = fma_audio_path(audio_dir, tid)
        if audio is None:
            name = f"{tid:06d}"
            problems.append(Problem(f"{name[:3]}/{name}.mp3", "no audio file",
                                    f"track {tid} of {where.name} has no audio file in {audio_dir}"))
            continue
        info = meta.get(tid, {})
        entries.append({"id": str(tid), "path": audio, "source": str(audio.relative_to(audio_dir)),
                        "line": f"{where}:track {tid}", "genre": info.get("genre"),
                        "emotions": emotions.get(tid), "split": info.get("split")})
    return _finish_tracks(task, entries, problems, cfg)


# ----------------------------------------------------------------------------------------------
# Conversion of one track (shared by the local path and the Beam pipeline).


def decode_track(track: Track, cfg: IngestConfig, fcfg: FeatureConfig):
    """Decodes a track's audio and cuts its clip; never raises for bad files.

    Args:
        track: the track.
        cfg: conversion settings (clip mode, minimum length, silence level).
        fcfg: feature settings (sample rate, clip length).

    Returns:
        (clip float32 waveform, None) or (None, Problem).
    """
    from mgr_tf.audio.features import load_audio

    try:
        audio = load_audio(track.path, fcfg)
    except FileNotFoundError:
        return None, Problem(track.source, "missing", "audio file not found")
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1]
        kind = "empty" if ("empty file" in reason or "no samples" in reason) else "corrupt"
        return None, Problem(track.source, kind, reason)
    except Exception as exc:  # a decoder failing in an unexpected way must not stop the run
        return None, Problem(track.source, "corrupt", f"{type(exc).__name__}: {exc}")
    return cut_clip(audio, track, cfg, fcfg)


def cut_clip(audio: np.ndarray, track: Track, cfg: IngestConfig, fcfg: FeatureConfig):
    """The clip of a decoded file by the clip mode, or the reason it is unusable.

    Args:
        audio: mono waveform at `fcfg.sample_rate`.
        track: the track (for messages).
        cfg: clip mode, minimum length and silence level.
        fcfg: sample rate and clip length.

    Returns:
        (clip, None) or (None, Problem).
    """
    sr = fcfg.sample_rate
    length = int(round(fcfg.clip_seconds * sr))
    n = audio.shape[0]
    if n < length:
        min_seconds = cfg.min_seconds
        if min_seconds is None:
            min_seconds = max(fcfg.clip_seconds - SHORT_TOLERANCE_SECONDS, fcfg.clip_seconds / 2)
        min_len = int(round(min_seconds * sr))
        if cfg.clip == "pad":
            clip = np.pad(audio, (0, length - n))
        elif n >= min_len:
            clip = audio
        else:
            return None, Problem(track.source, "too short",
                                 f"too short ({n / sr:.1f} s < {min_len / sr:g} s; use --clip pad or --min-seconds)")
    else:
        start = 0 if cfg.clip == "first" else (n - length) // 2
        clip = audio[start:start + length]
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    if peak <= 10.0 ** (cfg.silence_db / 20.0):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        return None, Problem(track.source, "silent", f"silent clip (peak {level} <= {cfg.silence_db:g} dBFS)")
    return np.ascontiguousarray(clip, np.float32), None


def make_extractor(fcfg: FeatureConfig):
    """A compiled waveform (samples,) -> fused features (frames, 140) function.

    Args:
        fcfg: feature settings.
    """
    import tensorflow as tf

    from mgr_tf.audio.features import fused_features

    return tf.function(lambda x: fused_features(x, fcfg), input_signature=[tf.TensorSpec([None], tf.float32)])


def convert_clip(track: Track, clip: np.ndarray, root: str | Path, task: str, cfg: IngestConfig,
                 fcfg: FeatureConfig, extractor):
    """Computes full and beat-synchronous features of a clip and writes both sample files.

    Args:
        track: the track.
        clip: its waveform.
        root: dataset root.
        task: "genre" or "multitask".
        cfg: conversion settings (gz).
        fcfg: feature settings.
        extractor: from `make_extractor(fcfg)`.

    Returns:
        (manifest record dict, None) or (None, Problem).
    """
    from mgr_tf.audio.features import beat_sync

    full = extractor(clip).numpy()
    if not np.all(np.isfinite(full)):
        return None, Problem(track.source, "corrupt", "features hold non-finite values")
    beat = beat_sync(full, cfg=fcfg)
    full_name, beat_name = layout.sub_datasets(task)
    root = Path(root)
    layout.write_sample(root / full_name / track.split, track.track_id, full.T, cfg.gz)
    layout.write_sample(root / beat_name / track.split, track.track_id, beat.T, cfg.gz)
    record = {"id": track.track_id, "source": track.source, "split": track.split,
              "frames": int(full.shape[0]), "beat_frames": int(beat.shape[0])}
    if task == "genre":
        record["genre"] = track.genre
    else:
        record["emotions"] = list(track.emotions)
    return record, None


def convert_track(track: Track, root: str | Path, task: str, cfg: IngestConfig, fcfg: FeatureConfig, extractor):
    """Decode + features + write for one track (the Beam path).

    Args:
        track: the track.
        root: dataset root.
        task: "genre" or "multitask".
        cfg: conversion settings.
        fcfg: feature settings.
        extractor: from `make_extractor(fcfg)`.

    Returns:
        (manifest record dict, None) or (None, Problem).
    """
    clip, problem = decode_track(track, cfg, fcfg)
    if problem is not None:
        return None, problem
    return _convert_or_problem(track, clip, root, task, cfg, fcfg, extractor)


def _convert_or_problem(track: Track, clip: np.ndarray, root: str | Path, task: str, cfg: IngestConfig,
                        fcfg: FeatureConfig, extractor):
    """`convert_clip`, with any failure returned as a Problem: one clip must not lose the run's finished work."""
    try:
        return convert_clip(track, clip, root, task, cfg, fcfg, extractor)
    except Exception as exc:
        return None, Problem(track.source, "error", f"feature extraction failed ({type(exc).__name__}: {exc})")


# ----------------------------------------------------------------------------------------------
# Manifest, label files and summary.


def settings_of(task: str, cfg: IngestConfig, fcfg: FeatureConfig) -> dict:
    """The settings that must match for a resumed run to add to a root's existing clips.

    Args:
        task: the resolved task.
        cfg: conversion settings.
        fcfg: feature settings.
    """
    keep = {k: v for k, v in to_dict(cfg).items() if k not in ("workers", "task", "fma_subset")}
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


def write_label_files(root: str | Path, task: str, records: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Rewrites the label files of both sub-datasets of `task` from manifest records (sorted by id).

    Args:
        root: dataset root.
        task: "genre" or "multitask".
        records: manifest records.

    Returns:
        {sub-dataset: {split: clips}}.
    """
    root = Path(root)
    by_split = defaultdict(list)
    for r in sorted(records, key=lambda r: id_sort_key(r["id"])):
        by_split[r["split"]].append(r)
    counts = {}
    for name in layout.sub_datasets(task):
        counts[name] = {}
        for split in layout.SPLITS:
            rows = by_split.get(split, [])
            counts[name][split] = len(rows)
            if not rows:
                continue
            path = root / name / layout.labels_name(split)
            if task == "genre":
                layout.write_genre_labels(path, [(r["id"], r["genre"]) for r in rows])
            else:
                layout.write_emotion_labels(path, [(r["id"], *r["emotions"]) for r in rows])
    return counts


def _outputs_exist(root: Path, task: str, record: dict, gz: bool) -> bool:
    return all((root / name / record["split"] / layout.sample_name(record["id"], gz)).is_file()
               for name in layout.sub_datasets(task))


def summarize(root: Path, labels: LabelSet, problems: list[Problem], converted: int, already: int,
              counts: dict, seconds: float, settings: dict, sources: dict) -> dict:
    """Builds, writes (`ROOT/ingest_summary.json`) and returns the run summary."""
    kinds = Counter(p.kind for p in problems)
    listed = defaultdict(list)
    for p in problems:
        if len(listed[p.kind]) < MAX_LISTED:
            listed[p.kind].append({"source": p.source, "reason": p.reason})
    summary = {"root": str(root), **sources, "task": labels.task, "tracks_listed": len(labels.tracks),
               "converted": converted, "already_converted": already, "skipped": dict(sorted(kinds.items())),
               "skipped_total": len(problems), "problems": dict(sorted(listed.items())), "counts": counts,
               "seconds": round(seconds, 2),
               "clips_per_second": round(converted / seconds, 3) if seconds > 0 and converted else 0.0,
               "settings": settings}
    (root / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


class _Progress:
    """A one-line progress report on stderr, redrawn at most twice a second."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.start, self.last = total, enabled, time.perf_counter(), 0.0
        self.done = self.converted = self.skipped = 0

    def update(self, ok: bool) -> None:
        self.done += 1
        self.converted += ok
        self.skipped += not ok
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.5 or self.done == self.total):
            self.last = now
            elapsed = now - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(f"\r[ingest] {self.done}/{self.total} files, {self.converted} converted, {self.skipped} skipped, "
                  f"{self.converted / max(elapsed, 1e-9):.2f} clips/s, ~{eta:.0f}s left",
                  end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)


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
    import multiprocessing

    workers = cfg.workers or os.cpu_count() or 1
    workers = min(workers, len(tracks))
    if workers <= 1:
        for track in tracks:
            yield (track, *decode_track(track, cfg, fcfg))
        return
    # Import TensorFlow (through features) but fork before its first op: the children share the
    # imported modules and never run TensorFlow themselves. Platforms without fork pay one import
    # per worker.
    import mgr_tf.audio.features  # noqa: F401

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _worker_init, (cfg, fcfg)) as pool:
        yield from pool.imap_unordered(_worker_decode, tracks, chunksize=1)


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
        progress: progress line on stderr.
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
        if record is not None and _outputs_exist(root, labels.task, record, cfg.gz):
            already += 1
        else:
            todo.append(track)
    root.mkdir(parents=True, exist_ok=True)
    problems = list(labels.problems)
    manifest = Manifest(root, settings)
    converted = 0
    try:
        if progress:
            print(f"[ingest] {len(labels.tracks)} labelled tracks ({labels.task}): {already} already converted, "
                  f"{len(todo)} to do, {len(labels.problems)} label problems", file=sys.stderr, flush=True)
        if beam_args is not None:
            try:
                from mgr_tf.audio.ingest_beam import run_pipeline
            except ImportError as exc:
                raise UserError(f"--beam needs Apache Beam (pip install 'mgr_tf[beam]'): {exc}") from None

            records, beam_problems = run_pipeline(todo, root, labels.task, cfg, fcfg, beam_args)
            for record in records:
                manifest.write(record)
                done[record["id"]] = record
            problems.extend(beam_problems)
            converted = len(records)
        elif todo:
            bar = _Progress(len(todo), progress)
            extractor = None
            for track, clip, problem in _decoded(todo, cfg, fcfg):
                if problem is None:
                    if extractor is None:
                        extractor = make_extractor(fcfg)
                    record, problem = _convert_or_problem(track, clip, root, labels.task, cfg, fcfg, extractor)
                    if record is not None:
                        manifest.write(record)
                        done[record["id"]] = record
                        converted += 1
                if problem is not None:
                    problems.append(problem)
                bar.update(problem is None)
    finally:
        manifest.close()
        # The manifest's settings fix the task, so every record belongs to this task's sub-datasets.
        counts = write_label_files(root, labels.task, done.values())
    sources = {"audio_dir": str(audio_dir), "labels": [str(p) for p in label_files]}
    return summarize(root, labels, problems, converted, already, counts, time.perf_counter() - start,
                     settings, sources)


def print_summary(summary: dict, file=sys.stderr, per_kind: int = 10) -> None:
    """Prints the summary: counts per sub-dataset and split, and the skipped files by reason.

    Args:
        summary: from `ingest`.
        file: stream to print to.
        per_kind: problems listed per kind (all are in ingest_summary.json).
    """
    for name, splits in summary["counts"].items():
        print(f"{name}: " + ", ".join(f"{s} {n}" for s, n in splits.items()), file=file)
    print(f"converted {summary['converted']} clips in {summary['seconds']:.1f} s "
          f"({summary['clips_per_second']:.2f} clips/s); {summary['already_converted']} already converted; "
          f"{summary['skipped_total']} skipped", file=file)
    for kind, count in summary["skipped"].items():
        print(f"  skipped {count} x {kind}:", file=file)
        for p in summary["problems"][kind][:per_kind]:
            print(f"    {p['source']}: {p['reason']}", file=file)
        if count > per_kind:
            print(f"    ... ({count - per_kind} more in {Path(summary['root']) / SUMMARY})", file=file)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: converts an audio folder and prints the summary."""
    parser = argparse.ArgumentParser(
        prog="python -m mgr_tf.ingest",
        description="Convert labelled audio files (wav, flac, ogg, mp3) into the dataset layout that "
                    "mgr_tf.train reads: one clip per file, full and beat-synchronous fused (mel + chroma) "
                    "features. Resumable: finished clips are listed in ROOT/ingest_manifest_<task>.jsonl and skipped "
                    "on the next run; bad files are reported and counted in ROOT/ingest_summary.json.",
        epilog="Unknown flags after --beam are passed to Apache Beam as pipeline options "
               "(e.g. --runner=DirectRunner --direct_num_workers=2).")
    parser.add_argument("audio_dir", metavar="AUDIO_DIR",
                        help="folder of audio files (for FMA metadata: the fma_* folder holding 000/000002.mp3 ...)")
    parser.add_argument("labels", metavar="LABELS", nargs="+",
                        help="FMA tracks.csv (genres; genres.csv beside it refines sub-genres) and/or "
                             "echonest.csv (valence, energy, danceability), or one plain CSV with the header "
                             "'path,genre' or 'path,valence,energy,danceability' (paths relative to AUDIO_DIR; "
                             "optional 'id' and 'split' (train/test) columns)")
    parser.add_argument("--out", required=True, metavar="ROOT", help="dataset root to write (or resume)")
    parser.add_argument("--task", choices=TASKS, default="auto",
                        help="genre: write fma_genre_spectrograms(+_beat); multitask: write "
                             "multitask_dataset(+_beat) from emotion labels; auto: multitask when the labels "
                             "hold emotions, else genre (default: auto)")
    parser.add_argument("--clip", choices=CLIP_MODES, default="centre",
                        help="centre: the middle clip; first: the first clip; pad: centre, and zero-pad files "
                             "shorter than the clip (default: centre)")
    parser.add_argument("--clip-seconds", type=float, default=FeatureConfig.clip_seconds,
                        help=f"clip length in seconds (default: {FeatureConfig.clip_seconds:g})")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="keep files at least this long but shorter than the clip, unpadded (shorter "
                             "arrays); shorter files are skipped as too short (default: the clip length less "
                             f"{SHORT_TOLERANCE_SECONDS:g} s, as FMA's previews last 29.9..30 s)")
    parser.add_argument("--silence-db", type=float, default=IngestConfig.silence_db,
                        help=f"skip clips whose peak is at or below this level in dBFS "
                             f"(default: {IngestConfig.silence_db:g})")
    parser.add_argument("--workers", type=int, default=0,
                        help="decoding processes; 0 = one per CPU core, 1 = no extra processes (default: 0)")
    parser.add_argument("--test-fraction", type=float, default=IngestConfig.test_fraction,
                        help="share of each genre (of all clips for emotions) put in test when the labels "
                             "carry no split; FMA's set.split is used when present "
                             f"(default: {IngestConfig.test_fraction:g})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hashed split (default: 0)")
    parser.add_argument("--gz", action="store_true", help="write .npy.gz samples (default: .npy)")
    parser.add_argument("--fma-subset", choices=FMA_SUBSETS, default=None,
                        help="with tracks.csv: keep only tracks of this FMA subset (default: all listed)")
    parser.add_argument("--beam", action="store_true",
                        help="run the conversion as an Apache Beam pipeline (needs the 'beam' extra); "
                             "unknown flags become Beam pipeline options (default runner: DirectRunner)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args, extra = parser.parse_known_args(argv)
    if extra and not args.beam:
        parser.error(f"unrecognized arguments: {' '.join(extra)} (pipeline options need --beam)")
    if args.clip_seconds <= 0:
        raise UserError(f"--clip-seconds must be positive, got {args.clip_seconds}")
    cfg = IngestConfig(task=args.task, clip=args.clip, min_seconds=args.min_seconds, silence_db=args.silence_db,
                       test_fraction=args.test_fraction, seed=args.seed, gz=args.gz, workers=args.workers,
                       fma_subset=args.fma_subset)
    fcfg = dataclasses.replace(FeatureConfig(), clip_seconds=args.clip_seconds)
    quiet_tensorflow()
    summary = ingest(args.audio_dir, args.labels, args.out, cfg, fcfg, progress=not args.quiet,
                     beam_args=list(extra) if args.beam else None)
    print_summary(summary)
    print(f"wrote {summary['root']} (summary: {Path(summary['root']) / SUMMARY})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
