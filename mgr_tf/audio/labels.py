"""Label files -> the tracks `mgr_tf.ingest` converts, with their split decided (`read_labels`).

Formats: the FMA metadata as published with the audio (Defferrard et al., "FMA: A Dataset for Music
Analysis", ISMIR 2017), `tracks.csv` (genre and the `set.split` / `set.subset` columns; audio at
`<AUDIO_DIR>/<first 3 digits>/<6-digit id>.mp3`) and `echonest.csv` (valence, energy, danceability),
or a plain CSV `path,genre` / `path,valence,energy,danceability` (paths relative to AUDIO_DIR;
optional `id` and `split` columns).

Genre names: FMA's 20 (`mgr_tf.core.published.GENRES_20`; other genres are skipped as unknown) for FMA
metadata and for label files whose genres are all among them, else the label file's own names (GTZAN's
"blues", "country", ... or any other set of two or more), which `mgr_tf.audio.convert` writes to
`genres.txt` beside the data. `IngestConfig.genre_vocabulary` overrides the choice.
"""

from __future__ import annotations

import ast
import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mgr_tf.audio.tracks import (
    AUDIO_EXTENSIONS,
    FMA_SUBSETS,
    LABEL_KEYS,
    IngestConfig,
    LabelSet,
    Problem,
    Track,
    label_kind,
)
from mgr_tf.core.cli import UserError
from mgr_tf.core.published import EMOTIONS, GENRES_20
from mgr_tf.data.splits import stratified_split

# FMA's set.split values -> the two splits of the layout.
FMA_SPLITS = {"training": "train", "validation": "train", "test": "test"}
# What each task needs from the label files (for the error when they lack it).
_TASK_NEEDS = {"genre": "genre labels (a 'genre' column or FMA tracks.csv)",
               "multitask": "valence, energy and danceability (plain CSV columns or FMA echonest.csv)"}


def assign_splits(ids_and_strata: Sequence[tuple[str, str]], test_fraction: float, seed: int) -> dict[str, str]:
    """Deterministic, stratified train/test split (`mgr_tf.data.splits.stratified_split`).

    round(test_fraction * N) tracks go to test, shared among strata by largest remainders and drawn
    with a seeded permutation of each stratum's sorted ids; every stratum of two or more tracks has at
    least one test and one train track (none in test for a zero fraction). The result depends only on
    the label list and the seed, never on the order of the labels or on which audio files turn out bad.

    Args:
        ids_and_strata: (track id, stratum) pairs, e.g. the genre as stratum.
        test_fraction: share put in test.
        seed: seed of the draw.

    Returns:
        {track id: "train" | "test"}.
    """
    pairs = list(ids_and_strata)
    ids = [track_id for track_id, _ in pairs]
    test = stratified_split(ids, [stratum for _, stratum in pairs], test_fraction, seed, min_per_stratum=1)
    return {track_id: "test" if chosen else "train" for track_id, chosen in zip(ids, test)}


def read_labels(audio_dir: str | Path, label_files: Sequence[str | Path], cfg: IngestConfig) -> LabelSet:
    """Reads the label files into tracks with a decided split.

    Formats: FMA `tracks.csv` (3 header rows; genre from `track.genre_top`, or a known direct
    sub-genre from `track.genres` when FMA's `genres.csv` lies beside it; split from `set.split`)
    and `echonest.csv` (4 header rows; `echonest.audio_features.{valence,energy,danceability}`),
    given alone or together (then tracks.csv gives the split and subset of the echonest tracks),
    or one plain CSV (`path,genre` or `path,valence,energy,danceability`, optional `id`, `split`).
    Unusable lines (unknown genre with FMA's names, missing audio, values outside [0, 1], duplicate
    ids) become problems and are skipped.

    Args:
        audio_dir: folder the audio paths are relative to (the fma_* folder for FMA metadata).
        label_files: one or two label files.
        cfg: conversion settings (task, genre names, split fraction and seed, FMA subset).

    Raises:
        FileNotFoundError: a label file or the audio folder is missing.
        ValueError: unreadable label file, no labels at all, a task the labels cannot give, or (with
            the label file's own genre names) a blank name or a single genre; each naming the file.
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


# ----------------------------------------------------------------------------------------------
# Checks and splits, common to all formats.


def _resolve_task(cfg: IngestConfig, available: dict[str, bool], where: Path) -> str:
    """The task to convert for: `cfg.task`, or for "auto" multitask when emotions are available."""
    task = cfg.task
    if task == "auto":
        task = "multitask" if available["emotion"] else "genre"
    if not available[label_kind(task)]:
        raise ValueError(f"{where}: --task {task} needs {_TASK_NEEDS[task]}")
    return task


def _genre_names(entries: list[dict], cfg: IngestConfig, where: Path, fma_metadata: bool) -> tuple[str, ...]:
    """The label files' own genre names when they replace FMA's 20, else () (see the module docstring).

    Raises:
        ValueError: with the label file's own names, a blank or unwritable name or fewer than two
            genres, naming the file (and line).
    """
    mode = cfg.genre_vocabulary
    named = [e for e in entries if e.get("genre")]
    if mode == "auto":
        mode = "fma" if fma_metadata or all(e["genre"] in GENRES_20 for e in named) else "labels"
    if mode == "fma":
        return ()
    if not fma_metadata:
        for e in entries:
            if not e.get("genre"):
                raise ValueError(f"{e['line']}: empty genre name (every line needs a genre)")
            if any(c in e["genre"] for c in "\t\r\n"):
                raise ValueError(f"{e['line']}: genre name {e['genre']!r} holds a tab or line break")
    names = tuple(sorted({e["genre"] for e in named}))
    if len(names) < 2:
        raise ValueError(f"{where}: a single genre {names[0]!r}: classification needs at least two"
                         if names else f"{where}: no genre names")
    # FMA's names keep FMA's vocabulary (and its 20 -> 10 mapping), whichever mode found them.
    return () if set(names) <= set(GENRES_20) else names


def _genre_problem(genre, vocabulary: tuple[str, ...]) -> tuple[str, str] | None:
    if not genre:
        return "no label", "no genre"
    if not vocabulary and genre not in GENRES_20:
        return "unknown genre", (f"genre {genre!r} is not one of the 20 FMA genres (--genre-vocabulary labels "
                                 f"keeps the label file's own names)")
    return None


def _emotion_problem(emotions, vocabulary: tuple[str, ...]) -> tuple[str, str] | None:
    if emotions is None or any(not (isinstance(v, float) and 0.0 <= v <= 1.0) for v in emotions):
        return "bad label", f"emotion values {emotions} not all in [0, 1]"
    return None


@dataclass(frozen=True)
class _KindRules:
    """How the labels of one kind are checked and split.

    Args:
        names: (entries, cfg, label file, from FMA metadata) -> the vocabulary of the label files, or ().
        problem: (label, vocabulary) -> (problem kind, reason) when the label is unusable, else None.
        stratum: label -> the stratum of the stratified test split.
    """

    names: Callable[[list, IngestConfig, Path, bool], tuple[str, ...]]
    problem: Callable[[Any, tuple[str, ...]], tuple[str, str] | None]
    stratum: Callable[[Any], str]


_RULES = {"genre": _KindRules(_genre_names, _genre_problem, lambda genre: genre),
          "emotion": _KindRules(lambda *_: (), _emotion_problem, lambda _: "all")}


def _finish_tracks(task: str, entries: list[dict], problems: list[Problem], cfg: IngestConfig, where: Path,
                   fma_metadata: bool = False) -> LabelSet:
    """Checks labels and duplicate ids, then decides the split of entries that carry none."""
    if not entries and not problems:
        raise ValueError(f"{where}: no labelled tracks in the label file")
    kind = label_kind(task)
    key, rules = LABEL_KEYS[kind], _RULES[kind]
    vocabulary = rules.names(entries, cfg, where, fma_metadata)
    kept, seen = [], {}
    for e in entries:
        bad = rules.problem(e.get(key), vocabulary)
        if bad:
            problems.append(Problem(e["line"], *bad))
            continue
        if e["id"] in seen:
            problems.append(Problem(e["line"], "duplicate id", f"track id {e['id']!r} already used by {seen[e['id']]}"))
            continue
        seen[e["id"]] = e["source"]
        kept.append(e)
    free = [(e["id"], rules.stratum(e[key])) for e in kept if not e.get("split")]
    decided = assign_splits(free, cfg.test_fraction, cfg.seed)
    tracks = tuple(Track(e["id"], str(Path(e["path"]).resolve()), e["source"], e.get("split") or decided[e["id"]],
                         label=e[key]) for e in kept)
    return LabelSet(task, tracks, tuple(problems), vocabulary)


# ----------------------------------------------------------------------------------------------
# Plain CSV.


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


def _safe_id(text: str) -> str:
    """`text` with every character outside [A-Za-z0-9_.-] replaced by "_" (a usable file name stem)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _plain_track_id(source: str) -> str:
    name = Path(source).name
    for ext in AUDIO_EXTENSIONS:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return _safe_id(name)


def _read_plain(path: Path, audio_dir: Path):
    """Rows {id, source, path, genre | emotions, split, line} of a plain CSV, which labels it has, problems."""
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
        available = {"genre": "genre" in columns, "emotion": all(e in columns for e in EMOTIONS)}
        if not any(available.values()):
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
            if available["genre"]:
                entry["genre"] = row["genre"]
            if available["emotion"]:
                try:
                    entry["emotions"] = tuple(float(row[e]) for e in EMOTIONS)
                except ValueError:
                    problems.append(Problem(where, "bad label", "emotion values must be numbers"))
                    continue
            rows.append(entry)
    return rows, available, problems


def _labels_from_plain(path: Path, audio_dir: Path, cfg: IngestConfig) -> LabelSet:
    rows, available, problems = _read_plain(path, audio_dir)
    task = _resolve_task(cfg, available, path)
    return _finish_tracks(task, rows, problems, cfg, path)


# ----------------------------------------------------------------------------------------------
# FMA metadata.


def _pandas(path: Path):
    """pandas, imported only for FMA's metadata files (it takes a second to import)."""
    try:
        import pandas  # heavy, and needed only by FMA metadata
    except ImportError:
        raise UserError(f"{path}: reading FMA metadata needs pandas (pip install pandas)") from None
    return pandas


def _read_fma(path: Path, header_rows: int):
    pd = _pandas(path)
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


def _fma_genre_titles(tracks_csv: Path) -> dict[int, str]:
    """genre id -> title from `genres.csv` beside tracks.csv (empty if absent)."""
    genres_csv = tracks_csv.with_name("genres.csv")
    if not genres_csv.is_file():
        return {}
    frame = _pandas(genres_csv).read_csv(genres_csv, index_col=0)
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


def _fma_tracks(tracks_csv: Path, cfg: IngestConfig) -> dict[int, dict]:
    """track id -> {genre, split} of tracks.csv, limited to `cfg.fma_subset`."""
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
    meta = {}
    for tid in frame.index:
        tid = int(tid)
        if allowed is not None and subset[tid] not in allowed:
            continue
        meta[tid] = {"genre": _fma_genre(top[tid], direct[tid] if direct is not None else None, titles),
                     "split": FMA_SPLITS.get(split[tid]) if split is not None else None}
    return meta


def _fma_emotions(echonest_csv: Path) -> dict[int, tuple]:
    """track id -> (valence, energy, danceability) of echonest.csv."""
    frame = _read_fma(echonest_csv, 3)
    cols = [_column(frame, echonest_csv, ("echonest", "audio_features", e)) for e in EMOTIONS]
    return {int(tid): tuple(float(c[tid]) for c in cols) for tid in frame.index}


def _labels_from_fma(tracks_csv: Path | None, echonest_csv: Path | None, audio_dir: Path,
                     cfg: IngestConfig) -> LabelSet:
    task = _resolve_task(cfg, {"genre": tracks_csv is not None, "emotion": echonest_csv is not None},
                         tracks_csv or echonest_csv)
    meta = _fma_tracks(tracks_csv, cfg) if tracks_csv is not None else {}
    emotions = _fma_emotions(echonest_csv) if echonest_csv is not None else {}
    # Per label kind: the label file that lists the tracks, and their ids.
    listed = {"genre": (tracks_csv, list(meta)),
              "emotion": (echonest_csv, [t for t in emotions if tracks_csv is None or t in meta])}
    where, ids = listed[label_kind(task)]
    problems: list[Problem] = []
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
    return _finish_tracks(task, entries, problems, cfg, where, fma_metadata=True)
