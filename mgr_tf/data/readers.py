"""Reading sample and label files of the FMA spectrogram layout, with clear errors.

The layout (shared reference, section 1) is a root folder holding four sub-datasets; each has
`train/` and `test/` folders of `<id>.fused.full.npy` arrays of shape (140, T) and label files:
a tab-separated genre file (`<id>.fused.full.npy.gz<TAB><Genre>`) or a CSV of regression targets
(`Id,valence,energy,danceability` in the published data; any targets, named by the header). Label files
name `.npy.gz` files while many copies hold plain `.npy`: readers accept whichever exists.

Every problem is reported as one message naming the file (and the line for label files). With
`skip_bad=True`, example-level problems are collected as `Skipped` records instead of raised, so a
build can go on and report them in its summary.

What a root may reference: files inside it. A label line names a file of its split folder (no folders, no
absolute paths), and every file read (samples, encoder inputs, label files, `genres.txt`, `features.json`) must
lie inside the root once symlinks are resolved (`check_inside`), so that the fingerprint of the prepared records
(`mgr_tf.data.prepare.fingerprint`), which covers the root's folders, covers every file the records came from.
An array is read from its .npy header first: its size is checked against the caps before its data is
decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mgr_tf.core.published import GENRES_20
from mgr_tf.data.arrays import load_spectrogram, resolve_sample_path  # noqa: F401 (re-exported)
from mgr_tf.data.layout import (
    EMOTION_ID,
    ROOT_METADATA,
    SAMPLE_SUFFIX,
    SPLITS,
    SUB_DATASET_METADATA,
    SUB_DATASETS,
    VOCABULARY_FILE,
    check_genre_name,
    check_target_names,
    encoder_sample_name,
    labels_name,
)

# Name endings stripped (longest first) to get a track id from a file or label name.
_ID_SUFFIXES = (".fused.full.npy.gz", ".fused.full.npy", ".npy.gz", ".npy")


@dataclass(frozen=True)
class Skipped:
    """An example left out in skip-bad mode.

    Args:
        name: the file or label line that was bad (e.g. "train_labels.txt:12" or a sample path).
        reason: what was wrong with it.
    """

    name: str
    reason: str

    @classmethod
    def from_error(cls, name: str, exc: ValueError) -> "Skipped":
        """The skip for a reader's error, whose message is "<where>: <reason>" (the reason is kept)."""
        return cls(name, str(exc).split(": ", 1)[-1])

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class Example:
    """One labelled (or unlabelled) sample of a split.

    Args:
        track_id: the FMA track id (the file name without its suffixes).
        path: the sample file that exists (`.npy` or `.npy.gz`).
        genre: raw genre name (one of the sub-dataset's vocabulary) for genre sub-datasets, else None.
        targets: the regression targets' values (in the label file's column order) for emotion sub-datasets,
            else None.
        labelled: False for examples of a split without a label file.
    """

    track_id: str
    path: Path
    genre: str | None = None
    targets: tuple[float, ...] | None = None
    labelled: bool = True


@dataclass(frozen=True)
class SplitListing:
    """The examples of one split of one sub-dataset.

    Args:
        examples: examples in label-file order (sorted by id for unlabelled splits).
        labelled: whether the split had a label file.
        skipped: examples left out in skip-bad mode, each with its reason.
    """

    examples: tuple[Example, ...]
    labelled: bool
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)


def track_id_from_name(name: str) -> str:
    """The track id in a sample file name or label entry ("123.fused.full.npy.gz" -> "123").

    Args:
        name: a file name (no folder) or the id column of a label file.
    """
    for suffix in _ID_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_inside(root: str | Path, path: str | Path, what: str = "file") -> Path:
    """`path` if it lies inside the dataset root once symlinks are resolved, else ValueError naming both.

    The one rule of what a root may reference: its records are fingerprinted from its own folders, so a file
    reached through a link to elsewhere would be read from outside the data and never seen to change.

    Args:
        root: the dataset root.
        path: a file the root uses (its label files, metadata, samples).
        what: what the file is, for the message.
    """
    real_root = Path(root).resolve()
    real = Path(path).resolve()
    if real != real_root and real_root not in real.parents:
        raise ValueError(f"{path}: this {what} links to {real}, outside the dataset root {real_root} (a root may only "
                         "reference files inside it)")
    return Path(path)


def root_metadata_files(root: str | Path, sub_dataset: str) -> list[Path]:
    """The files besides the samples that a sub-dataset's records depend on and that exist: its label files,
    `genres.txt`, `targets.json` and the root's `features.json`, each checked to lie inside the root."""
    root = Path(root)
    sub = root / sub_dataset
    candidates = [root / name for name in ROOT_METADATA]
    candidates += [sub / labels_name(split) for split in SPLITS] + [sub / name for name in SUB_DATASET_METADATA]
    return [check_inside(root, p, "metadata file") for p in candidates if p.exists()]


def _text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark dropped), split at newlines only (\\n or \\r\\n).

    Not `str.splitlines`, which also splits inside a line at U+2028, form feeds and other separators: the label
    files are written one record per "\\n".
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a text file."""
    return [(i, line.strip()) for i, line in enumerate(_text_lines(path), start=1) if line.strip()]


def genre_vocabulary(root: str | Path, sub_dataset: str) -> tuple[str, ...]:
    """The genre names of a genre sub-dataset, in class-index order.

    FMA's 20 names unless the sub-dataset folder holds `genres.txt` (one name per line; written by
    `mgr_tf.ingest` for any other label set, e.g. GTZAN's lower-case names).

    Args:
        root: dataset root.
        sub_dataset: a genre sub-dataset folder name.

    Raises:
        ValueError: an empty vocabulary file, a blank or duplicated name, or fewer than two names.
    """
    path = Path(root) / sub_dataset / VOCABULARY_FILE
    if not path.is_file():
        return GENRES_20
    check_inside(root, path, "genre vocabulary")
    names = [line.strip() for line in _text_lines(path)]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f"{path}: empty genre vocabulary (expected one genre name per line)")
    for no, name in enumerate(names, start=1):
        check_genre_name(name, f"{path}:{no}")
        if names.index(name) != no - 1:
            raise ValueError(f"{path}:{no}: genre {name!r} is listed twice")
    if len(names) < 2:
        raise ValueError(f"{path}: a genre vocabulary needs at least two names, got {names}")
    return tuple(names)


def read_genre_labels(path: str | Path, *, skip_bad: bool = False, vocabulary: tuple[str, ...] = GENRES_20
                      ) -> tuple[list[tuple[int, str, str]], list[Skipped]]:
    """Reads a genre label file: a header line, then "<file name><TAB><Genre>" per line.

    Args:
        path: the label file (e.g. train_labels.txt).
        skip_bad: collect bad lines (unknown genre, duplicate id, wrong delimiter) as `Skipped`
            instead of raising.
        vocabulary: the genre names allowed (FMA's 20 unless the sub-dataset has a genres.txt).

    Returns:
        ([(line number, file name, genre)], skipped) in file order.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: missing header, a line that is not "<file><TAB><genre>", an unknown genre or a
            duplicate id (each naming file and line), or no examples at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: genre label file not found")
    lines = _data_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty label file (expected a header line, then '<id>.fused.full.npy.gz<TAB><Genre>' lines)")
    first_no, first = lines[0]
    if ".npy" in first:
        raise ValueError(f"{path}:{first_no}: missing header line (the first line is a data line: {first!r})")
    def parse(no: int, line: str):
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{path}:{no}: expected '<id>.fused.full.npy.gz<TAB><Genre>' (one tab), got {line!r}")
        name, genre = parts[0].strip(), parts[1].strip()
        check_genre_name(genre, f"{path}:{no}")
        if genre not in vocabulary:
            hint = (f"one of the 20 FMA genres: {', '.join(GENRES_20)}; for another label set, list its names "
                    f"in {path.parent / VOCABULARY_FILE}, one per line" if vocabulary == GENRES_20 else
                    f"one of the {len(vocabulary)} names in {path.parent / VOCABULARY_FILE}")
            raise ValueError(f"{path}:{no}: unknown genre {genre!r} (expected {hint})")
        return track_id_from_name(name), (no, name, genre)

    return _parse_label_lines(path, lines[1:], parse, skip_bad)


def read_target_names(path: str | Path) -> tuple[str, ...]:
    """The regression targets named by a label CSV's header (``Id,<target>,...``), in column order.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: an empty file, a header without the id column or without targets, a target name that is not
            a plain name, or a line that is a data line (naming file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: regression label file not found")
    lines = _data_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty label file (expected a header 'Id,<target>,...', e.g. "
                         f"'Id,valence,energy,danceability')")
    return _parse_target_header(path, *lines[0])


def _parse_target_header(path: Path, no: int, first: str) -> tuple[str, ...]:
    header = [h.strip() for h in first.split(",")]
    if "," not in first and any(d in first for d in ("\t", ";", "|", " ")):
        raise ValueError(f"{path}:{no}: wrong delimiter: expected commas as in 'Id,valence,energy', got {first!r}")
    if ".npy" in first or header[0].isdigit():
        raise ValueError(f"{path}:{no}: missing header line 'Id,<target>,...' (got the data line {first!r})")
    if header[0].lower() != EMOTION_ID.lower():
        raise ValueError(f"{path}:{no}: expected the header 'Id,<target>,...' (first column Id), got {first!r}")
    return check_target_names(tuple(header[1:]), f"{path}:{no}")


def read_emotion_labels(path: str | Path, *, skip_bad: bool = False
                        ) -> tuple[list[tuple[int, str, tuple[float, ...]]], list[Skipped]]:
    """Reads a CSV of regression targets: header ``Id,<target>,...`` (the published ``Id,valence,energy,
    danceability`` or any names), then one line per clip with values in [0, 1].

    Args:
        path: the CSV (e.g. train_labels.txt of multitask_dataset).
        skip_bad: collect bad lines (non-numbers, values outside [0, 1], duplicates) as `Skipped`.

    Returns:
        ([(line number, id, values in the header's target order)], skipped) in file order; the names are
        `read_target_names(path)`.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: missing or wrong header, wrong delimiter, a bad value or a duplicate id (each
            naming file and line), or no examples at all.
    """
    targets = read_target_names(path)
    path = Path(path)
    lines = _data_lines(path)

    def parse(no: int, line: str):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(targets) + 1:
            raise ValueError(f"{path}:{no}: expected {len(targets) + 1} comma-separated fields "
                             f"'<id>,{','.join(f'<{t}>' for t in targets)}', got {line!r}")
        values = []
        for name, text in zip(targets, parts[1:]):
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{path}:{no}: {name} {text!r} is not a number") from None
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"{path}:{no}: {name} {text} is outside [0, 1] (targets are stored in [0, 1]; "
                                 "ingest --target-range NAME=LO:HI scales other ranges)")
            values.append(value)
        return track_id_from_name(parts[0]), (no, parts[0], tuple(values))

    return _parse_label_lines(path, lines[1:], parse, skip_bad)


def regression_targets(root: str | Path, sub_dataset: str) -> tuple[str, ...]:
    """The regression targets of an emotion sub-dataset: the columns of its train label file, in order.

    Raises:
        FileNotFoundError: the root, the sub-dataset or its train label file is missing.
        ValueError: a bad header, or a test label file that names other targets.
    """
    sub = sub_dataset_dir(root, sub_dataset)
    targets = read_target_names(sub / labels_name("train"))
    test = sub / labels_name("test")
    if test.is_file() and read_target_names(test) != targets:
        raise ValueError(f"{test}: names the targets {list(read_target_names(test))}, but "
                         f"{sub / labels_name('train')} names {list(targets)}")
    return targets


def _parse_label_lines(path: Path, lines: list[tuple[int, str]], parse, skip_bad: bool) -> tuple[list, list[Skipped]]:
    """Applies `parse(line number, text) -> (track id, row)` to each data line of a label file.

    Empty and duplicate ids are errors too. Each error names file and line; with `skip_bad` the line
    is collected as `Skipped` instead.
    """
    rows: list = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for no, line in lines:
        try:
            track_id, row = parse(no, line)
            if not track_id:
                raise ValueError(f"{path}:{no}: empty track id")
            if track_id in seen:
                raise ValueError(f"{path}:{no}: duplicate id {track_id!r} (first on line {seen[track_id]})")
            seen[track_id] = no
            rows.append(row)
        except ValueError as exc:
            if not skip_bad:
                raise
            skipped.append(Skipped.from_error(f"{path}:{no}", exc))
    if not rows and not skipped:
        raise ValueError(f"{path}: empty split (a header but no label lines)")
    return rows, skipped


def sub_dataset_dir(root: str | Path, sub_dataset: str) -> Path:
    """The folder of one sub-dataset, with a clear error when the root lacks it.

    Args:
        root: the dataset root (holding the four sub-datasets).
        sub_dataset: one of `SUB_DATASETS`.

    Raises:
        FileNotFoundError: the root or the sub-dataset folder is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root not found (expected a folder holding "
                                f"{', '.join(SUB_DATASETS)})")
    sub = root / sub_dataset
    if not sub.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"{sub}: missing sub-dataset folder '{sub_dataset}' (expected {sub_dataset}/train/, "
            f"{sub_dataset}/test/ and {sub_dataset}/train_labels.txt under the root; found: "
            f"{', '.join(present) or 'no folders'})"
        )
    return sub


def is_genre_sub_dataset(sub_dataset: str) -> bool:
    """True for the genre sub-datasets, False for the emotion (multitask) ones."""
    return sub_dataset.startswith("fma_genre")


def list_split(root: str | Path, sub_dataset: str, split: str, *, skip_bad: bool = False,
               check_files: bool = False) -> SplitListing:
    """Lists the examples of one split, checking that every labelled file exists.

    A split without a label file is unlabelled (the multitask test labels were withheld in the
    original release): its examples are the sample files found in the split folder. The train
    split must be labelled. A test split with neither folder nor label file is empty (every clip in train).

    Args:
        root: dataset root.
        sub_dataset: one of `SUB_DATASETS`.
        split: "train" or "test".
        skip_bad: skip bad label lines and missing files (recorded in `skipped`) instead of raising.
        check_files: also load every sample (slow) so that corrupt files are found now.

    Raises:
        FileNotFoundError: missing root, sub-dataset, split folder, train labels, or a labelled file.
        ValueError: bad label files (see the readers) or an empty split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    sub = sub_dataset_dir(root, sub_dataset)
    split_dir = sub / split
    labels = sub / labels_name(split)
    if not split_dir.is_dir():
        if split == "test" and not labels.is_file() and (sub / "train").is_dir():
            # Every clip in train (e.g. an ingested CSV whose split column says train everywhere): no test split;
            # training scores the validation split, cross-validation folds the train split.
            return SplitListing((), False, ())
        raise FileNotFoundError(f"{split_dir}: missing split folder '{split}/' of {sub_dataset} "
                                f"(expected {split}/<id>{SAMPLE_SUFFIX} files)")
    genre = is_genre_sub_dataset(sub_dataset)
    examples: list[Example] = []
    skipped: list[Skipped] = []
    if labels.exists():
        check_inside(root, labels, "label file")
    if not labels.is_file():
        if split == "train":
            raise FileNotFoundError(f"{labels}: missing label file of the train split of {sub_dataset}")
        # Only the samples: encoder inputs stored beside them (<id>.<encoder>.npy) are not examples.
        names = sorted({track_id_from_name(p.name) for p in split_dir.iterdir()
                        if p.name.endswith((SAMPLE_SUFFIX, SAMPLE_SUFFIX + ".gz"))}, key=id_sort_key)
        if not names:
            raise ValueError(f"{split_dir}: empty split (no <id>{SAMPLE_SUFFIX}[.gz] files and no {labels.name})")
        for track_id in names:
            path = resolve_sample_path(split_dir / (track_id + SAMPLE_SUFFIX))
            try:
                examples.append(Example(track_id, check_inside(root, path, "sample"), labelled=False))
            except ValueError as exc:
                if not skip_bad:
                    raise
                skipped.append(Skipped.from_error(str(path), exc))
        listing_labelled = False
    else:
        if genre:
            rows, skipped = read_genre_labels(labels, skip_bad=skip_bad,
                                              vocabulary=genre_vocabulary(root, sub_dataset))
        else:
            rows, skipped = read_emotion_labels(labels, skip_bad=skip_bad)
        for no, name, label in rows:
            track_id = track_id_from_name(name)
            file_name = name if name.endswith((".npy", ".npy.gz")) else track_id + SAMPLE_SUFFIX
            try:
                path = check_inside(root, resolve_sample_path(split_dir / _plain_file_name(file_name, labels, no)),
                                    "sample")
            except (FileNotFoundError, ValueError) as exc:
                missing = isinstance(exc, FileNotFoundError)
                reason = f"names a missing file ({exc})" if missing else str(exc).split(": ", 1)[-1]
                if not skip_bad:
                    raise (FileNotFoundError if missing else ValueError)(f"{labels}:{no}: {reason}") from None
                skipped.append(Skipped(f"{labels}:{no}", reason))
                continue
            if genre:
                examples.append(Example(track_id, path, genre=label))
            else:
                examples.append(Example(track_id, path, targets=label))
        listing_labelled = True
    if check_files:
        kept = []
        for ex in examples:
            try:
                load_spectrogram(ex.path)
                kept.append(ex)
            except ValueError as exc:
                if not skip_bad:
                    raise
                skipped.append(Skipped.from_error(str(ex.path), exc))
        examples = kept
    if not examples:
        raise ValueError(f"{labels if listing_labelled else split_dir}: empty split (no usable examples"
                         f"{'; ' + str(len(skipped)) + ' skipped' if skipped else ''})")
    return SplitListing(tuple(examples), listing_labelled, tuple(skipped))


def _plain_file_name(name: str, labels: Path, no: int) -> str:
    """`name` if it names a file of the label file's split folder (no folder, not absolute), else ValueError."""
    if "/" in name or "\\" in name or "\0" in name or name in (".", "..") or Path(name).is_absolute():
        raise ValueError(f"{labels}:{no}: {name!r} is not a file name of the split folder (a label names "
                         f"<id>{SAMPLE_SUFFIX}[.gz] in it, without folders)")
    return name


def has_encoder_input(root: str | Path, sub_dataset: str, encoder: str) -> bool:
    """Whether a sub-dataset holds any stored input of `encoder` (`ingest --encoder`: <id>.<encoder>.npy[.gz])."""
    sub = Path(root) / sub_dataset
    return any(next(iter((sub / split).glob(f"*.{encoder}.npy*")), None) for split in SPLITS if (sub / split).is_dir())


def encoder_input_path(sample_path: str | Path, track_id: str, encoder: str) -> Path:
    """The stored encoder input of a sample (either suffix), found beside it.

    Raises:
        FileNotFoundError: it is missing (the message says how to make it).
    """
    folder = Path(sample_path).parent
    for gz in (False, True):
        path = folder / encoder_sample_name(track_id, encoder, gz)
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder / encoder_sample_name(track_id, encoder, False)}[.gz]: missing {encoder} "
                            f"encoder input; ingest the audio with `python -m mgr_tf.ingest --encoder {encoder}`")


def id_sort_key(track_id: str):
    """Sort key of track ids: numeric ids in number order, then the others by name."""
    return (0, int(track_id), "") if track_id.isdigit() else (1, 0, track_id)
