"""Label files -> the tracks `mgr_tf.ingest` converts, with their split decided (`read_labels`).

Formats: the FMA metadata as published with the audio (Defferrard et al., "FMA: A Dataset for Music
Analysis", ISMIR 2017), `tracks.csv` (genre and the `set.split` / `set.subset` columns; audio at
`<AUDIO_DIR>/<first 3 digits>/<6-digit id>.mp3`) and `echonest.csv` (valence, energy, danceability),
or a plain CSV `path,genre`, `path,<target>,...` or both, `path,genre,<target>,...` (paths relative to
AUDIO_DIR; optional `id` and `split` columns; the targets are any numeric columns, see `plain_targets`).

One `LabelSet` per kind of label the files hold (genre, regression targets), the same tracks under the same
splits, so one pass over the audio fills both kinds of sub-datasets.

Genre names: a plain CSV's own names, always (written to `genres.txt` beside the data, so a model predicts the
user's genres, even when they are FMA names); FMA metadata keeps FMA's 20 names (`mgr_tf.core.published`; other
genres are skipped as unknown) and the published 20 -> 10 mapping. `IngestConfig.genre_vocabulary` overrides the
choice.
"""

from __future__ import annotations

import ast
import csv
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from mgr_tf.audio.tracks import AUDIO_EXTENSIONS, FMA_SUBSETS, KIND_TASKS, IngestConfig, LabelSet, Problem, Track
from mgr_tf.core.cli import UserError
from mgr_tf.core.published import EMOTIONS, GENRES_20
from mgr_tf.data.layout import TARGET_NAME, check_genre_name, check_target_names
from mgr_tf.data.splits import stratified_split

# FMA's set.split values -> the two splits of the layout.
FMA_SPLITS = {"training": "train", "validation": "train", "test": "test"}
# Columns of a plain CSV that are never targets.
PLAIN_COLUMNS = ("path", "id", "split", "genre")
# What each kind needs from the label files (for the error when they lack it).
_KIND_NEEDS = {"genre": "genre labels (a 'genre' column or FMA tracks.csv)",
               "emotion": "regression targets (numeric columns in [0, 1] of a plain CSV, or FMA echonest.csv)"}


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


def read_labels(audio_dir: str | Path, label_files: Sequence[str | Path], cfg: IngestConfig) -> list[LabelSet]:
    """Reads the label files into tracks with a decided split: one `LabelSet` per kind of label converted.

    Formats: FMA `tracks.csv` (3 header rows; genre from `track.genre_top`, or a known direct
    sub-genre from `track.genres` when FMA's `genres.csv` lies beside it; split from `set.split`)
    and `echonest.csv` (4 header rows; `echonest.audio_features.{valence,energy,danceability}`),
    given alone or together (then tracks.csv gives the split and subset of the echonest tracks),
    or one plain CSV (`path` with `genre` and/or target columns, optional `id`, `split`).
    Unusable lines (unknown genre with FMA's names, missing audio, values outside [0, 1], duplicate
    ids) become problems and are skipped.

    Args:
        audio_dir: folder the audio paths are relative to (the fma_* folder for FMA metadata).
        label_files: one or two label files.
        cfg: conversion settings (task, genre names, targets, split fraction and seed, FMA subset).

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


def _kinds_to_convert(cfg: IngestConfig, available: dict[str, bool], where: Path) -> tuple[str, ...]:
    """The label kinds to convert: that of `cfg.task`, or for "auto" every kind the labels hold."""
    if cfg.task == "auto":
        kinds = tuple(kind for kind in ("genre", "emotion") if available[kind])
        if not kinds:
            raise ValueError(f"{where}: no labels: expected {_KIND_NEEDS['genre']} or {_KIND_NEEDS['emotion']}")
        return kinds
    kind = "genre" if cfg.task == "genre" else "emotion"
    if not available[kind]:
        raise ValueError(f"{where}: --task {cfg.task} needs {_KIND_NEEDS[kind]}")
    return (kind,)


def _genre_names(entries: list[dict], cfg: IngestConfig, where: Path, fma_metadata: bool) -> tuple[str, ...]:
    """The label files' own genre names, or () for FMA's 20 (FMA metadata, or when asked).

    Raises:
        ValueError: with the label file's own names, a blank or unwritable name or fewer than two
            genres, naming the file (and line).
    """
    mode = cfg.genre_vocabulary
    if mode == "auto":
        mode = "fma" if fma_metadata else "labels"
    if mode == "fma":
        return ()
    named = [e for e in entries if e.get("genre")]
    if not fma_metadata:
        for e in entries:
            if not e.get("genre"):
                raise ValueError(f"{e['line']}: empty genre name (every line needs a genre)")
            check_genre_name(e["genre"], str(e["line"]))  # the readers' rule: what ingest writes, they read
    names = tuple(sorted({e["genre"] for e in named}))
    if len(names) < 2:
        raise ValueError(f"{where}: a single genre {names[0]!r}: classification needs at least two"
                         if names else f"{where}: no genre names")
    return names


def _genre_problem(genre, vocabulary: tuple[str, ...]) -> tuple[str, str] | None:
    if not genre:
        return "no label", "no genre"
    if not vocabulary and genre not in GENRES_20:
        return "unknown genre", (f"genre {genre!r} is not one of the 20 FMA genres (--genre-vocabulary labels "
                                 f"keeps the label file's own names)")
    return None


def _target_problem(values) -> tuple[str, str] | None:
    if values is None:
        return "bad label", "no target values"
    if isinstance(values, str):  # the reader's reason
        return "bad label", values
    return None


def _finish(kinds: tuple[str, ...], entries: list[dict], problems: list[Problem], cfg: IngestConfig, where: Path,
            *, fma_metadata: bool = False, targets: tuple[str, ...] = (), ranges: dict | None = None,
            notes: tuple[str, ...] = ()) -> list[LabelSet]:
    """One `LabelSet` per kind: labels checked, duplicate ids refused, and one split per track for every kind
    (entries without a split are drawn stratified by genre when there is one)."""
    if not entries and not problems:
        raise ValueError(f"{where}: no labelled tracks in the label file")
    vocabulary = _genre_names(entries, cfg, where, fma_metadata) if "genre" in kinds else ()
    sets = []
    for kind in kinds:
        kind_problems = list(problems) if kind == kinds[0] else []  # reported once
        kept, seen = [], {}
        for e in entries:
            bad = _genre_problem(e.get("genre"), vocabulary) if kind == "genre" else _target_problem(e.get("targets"))
            if bad:
                # A track of a genre-and-targets file without target values is a genre track only.
                if not (kind == "emotion" and e.get("targets") is None and "genre" in kinds):
                    kind_problems.append(Problem(e["line"], *bad))
                continue
            if e["id"] in seen:
                kind_problems.append(Problem(e["line"], "duplicate id",
                                             f"track id {e['id']!r} already used by {seen[e['id']]}"))
                continue
            seen[e["id"]] = e["source"]
            kept.append(e)
        sets.append((kind, kept, kind_problems))
    # One split per track for every kind: stratified by genre where the track has one (the genre kind comes first).
    strata: dict[str, str] = {}
    for kind, kept, _ in sets:
        for e in kept:
            if not e.get("split"):
                if kind == "genre":
                    strata[e["id"]] = e["genre"]
                else:
                    strata.setdefault(e["id"], "all")
    decided = assign_splits(list(strata.items()), cfg.test_fraction, cfg.seed)
    out = []
    for kind, kept, kind_problems in sets:
        label_key = "genre" if kind == "genre" else "targets"
        tracks = tuple(Track(e["id"], str(Path(e["path"]).resolve()), e["source"], e.get("split") or decided[e["id"]],
                             label=e[label_key]) for e in kept)
        out.append(LabelSet(KIND_TASKS[kind], tracks, tuple(kind_problems), vocabulary if kind == "genre" else (),
                            targets if kind == "emotion" else (), dict(ranges or {}) if kind == "emotion" else {},
                            notes))
    return out


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


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _mostly_inside(numbers: Sequence[float], lo: float, hi: float) -> bool:
    """Whether a numeric column is a target of range [lo, hi]: all its values inside, or (10 values or more) at
    least 90 % of them, the others being typos that are reported line by line rather than a reason to drop the
    whole column."""
    inside = sum(lo <= n <= hi for n in numbers)
    return inside == len(numbers) or (len(numbers) >= 10 and inside >= 0.9 * len(numbers))


def plain_targets(path: Path, header: Sequence[str], rows: Sequence[dict], cfg: IngestConfig
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(target columns, notes on the other columns) of a plain CSV.

    A target is a numeric column (every non-empty value a finite number) whose values lie in [0, 1], or in the
    range `--target-range` declares for it (a column of 10 values or more with at most a tenth outside is a
    target too: those lines are skipped as bad labels, each named); `--targets` names them instead. Other
    columns (besides path, id, split and genre) are left out, each with a note saying why.

    Raises:
        ValueError: a column `--targets` or `--target-range` names that the file lacks or that is not numeric,
            or a target whose name is not a plain name.
    """
    candidates = [c for c in header if c not in PLAIN_COLUMNS]
    ranges = cfg.ranges()
    for name in [*cfg.targets, *ranges]:
        if name not in candidates:
            raise ValueError(f"{path}:1: no column {name!r} (its columns: {', '.join(header)})")
    chosen, notes = [], []
    for column in candidates:
        values = [row[column] for row in rows if row.get(column, "") != ""]
        numbers = [_number(v) for v in values]
        numeric = bool(values) and all(v is not None for v in numbers)
        lo, hi = ranges.get(column, (0.0, 1.0))
        if cfg.targets:
            if column not in cfg.targets:
                notes.append(f"column {column}: not a target (--targets names {', '.join(cfg.targets)})")
                continue
            if not numeric:
                raise ValueError(f"{path}: column {column!r} is named by --targets but holds values that are not "
                                 f"numbers (e.g. {next(v for v, n in zip(values, numbers) if n is None)!r})")
        elif not numeric:
            notes.append(f"column {column}: not numeric, not a target")
            continue
        elif not _mostly_inside(numbers, lo, hi):
            notes.append(f"column {column}: values outside [{lo:g}, {hi:g}], not a target "
                         f"(--target-range {column}=LO:HI maps another scale to [0, 1])")
            continue
        if not re.fullmatch(TARGET_NAME, column):
            notes.append(f"column {column}: not a plain name (letters, digits, _), not a target; rename it")
            continue
        chosen.append(column)
    return (check_target_names(tuple(chosen), f"{path}:1") if chosen else ()), tuple(notes)


def _plain_values(row: dict, targets: tuple[str, ...], ranges: dict) -> tuple[float, ...] | str:
    """The targets' values of one row in [0, 1] (mapped from a declared range), or why it has none."""
    values = []
    for name in targets:
        value = _number(row.get(name, ""))
        if value is None:
            return f"{name} {row.get(name, '')!r} is not a number"
        lo, hi = ranges.get(name, (0.0, 1.0))
        if not lo <= value <= hi:
            return f"{name} {value:g} is outside [{lo:g}, {hi:g}]"
        values.append((value - lo) / (hi - lo))
    return tuple(values)


def _labels_from_plain(path: Path, audio_dir: Path, cfg: IngestConfig) -> list[LabelSet]:
    """The label sets of a plain CSV: `path` with `genre` and/or target columns, optional `id` and `split`."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}:1: empty label file (expected the header 'path,genre' or 'path,<target>,...')")
        columns = [c.strip() for c in header]
        lowered = [c.lower() if c.lower() in PLAIN_COLUMNS else c for c in columns]
        if "path" not in lowered:
            raise ValueError(f"{path}:1: expected a header with a 'path' column ('path,genre' or "
                             f"'path,<target>,...'), got {','.join(header)!r}")
        rows, problems = [], []
        for line_no, raw in enumerate(reader, start=2):
            if not raw or not any(c.strip() for c in raw):
                continue
            where = f"{path}:{line_no}"
            if len(raw) != len(lowered):
                problems.append(Problem(where, "bad label", f"expected {len(lowered)} fields, got {len(raw)}"))
                continue
            rows.append((where, dict(zip(lowered, (c.strip() for c in raw)))))
    targets, notes = plain_targets(path, lowered, [row for _, row in rows], cfg)
    kinds = _kinds_to_convert(cfg, {"genre": "genre" in lowered, "emotion": bool(targets)}, path)
    ranges = cfg.ranges()
    entries = []
    for where, row in rows:
        source = row["path"]
        entry = {"source": source, "path": audio_dir / source, "line": where,
                 "id": _safe_id(row["id"]) if row.get("id") else _plain_track_id(source),
                 "split": row.get("split") or None}
        if not _inside(audio_dir, source):
            problems.append(Problem(where, "bad label", f"path {source!r} leads outside the audio folder "
                                                        f"{audio_dir} (paths are relative to it, without '..')"))
            continue
        if entry["split"] not in (None, "train", "test"):
            problems.append(Problem(where, "bad label", f"split {entry['split']!r} is not train or test"))
            continue
        if "genre" in kinds:
            entry["genre"] = row["genre"]
        if "emotion" in kinds:
            entry["targets"] = _plain_values(row, targets, ranges)
        entries.append(entry)
    return _finish(kinds, entries, problems, cfg, path, targets=targets if "emotion" in kinds else (),
                   ranges={t: r for t, r in ranges.items() if t in targets}, notes=notes)


def _inside(audio_dir: Path, source: str) -> bool:
    """Whether a CSV row's path names a file under the audio folder: not absolute, no '..' out of it (a label
    file read from elsewhere must not make ingest read, and store, any file of the machine). Links inside the
    folder may point anywhere: the folder is the user's own (a music library of links)."""
    base = os.path.normpath(str(audio_dir))
    full = os.path.normpath(os.path.join(base, source))
    return not os.path.isabs(source) and (full == base or full.startswith(base + os.sep))


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
                     cfg: IngestConfig) -> list[LabelSet]:
    kinds = _kinds_to_convert(cfg, {"genre": tracks_csv is not None, "emotion": echonest_csv is not None},
                              tracks_csv or echonest_csv)
    meta = _fma_tracks(tracks_csv, cfg) if tracks_csv is not None else {}
    emotions = _fma_emotions(echonest_csv) if echonest_csv is not None else {}
    # The tracks: those of tracks.csv (with their genre; their emotions where echonest.csv has them), else
    # those of echonest.csv.
    where = tracks_csv if "genre" in kinds else echonest_csv
    ids = list(meta) if "genre" in kinds else [t for t in emotions if tracks_csv is None or t in meta]
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
        values = emotions.get(tid)
        if values is not None and not all(0.0 <= v <= 1.0 for v in values):
            values = f"emotion values {values} not all in [0, 1]"
        entries.append({"id": str(tid), "path": audio, "source": str(audio.relative_to(audio_dir)),
                        "line": f"{where}:track {tid}", "genre": info.get("genre"), "targets": values,
                        "split": info.get("split")})
    return _finish(kinds, entries, problems, cfg, where, fma_metadata=True,
                   targets=EMOTIONS if "emotion" in kinds else ())
