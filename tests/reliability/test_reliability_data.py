"""Dataset roots: what a root may reference (case 6), the records' fingerprint (case 2), caps (case 5), and the
names, encodings and sizes a user's files take (case 10 and our own)."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mgr_tf.core.config import DataConfig
from mgr_tf.data import readers
from mgr_tf.data.layout import npy_bytes
from tests.reliability.conftest import label_rows

GENRE = "fma_genre_spectrograms"


@pytest.fixture
def root(tiny_corpus, tmp_path) -> Path:
    """A root holding the tiny corpus's full genre sub-dataset (40 train, 20 test clips) and its features.json."""
    out = tmp_path / "root"
    shutil.copytree(tiny_corpus / GENRE, out / GENRE)
    shutil.copy(tiny_corpus / "features.json", out / "features.json")
    return out


def genre_config(root: Path, **kwargs) -> DataConfig:
    return DataConfig(data_dir=str(root), task="genre", features="fused", patch_frames=0, **kwargs)


def first_train_file(root: Path) -> tuple[str, Path]:
    """(label name, sample path) of the first train line."""
    name = label_rows(root / GENRE / "train_labels.txt")[0].split("\t")[0]
    return name, readers.resolve_sample_path(root / GENRE / "train" / name)


def relabel(root: Path, line: int, name: str) -> None:
    """Makes data line `line` (0-based) of the train labels name `name`, keeping its genre."""
    path = root / GENRE / "train_labels.txt"
    lines = path.read_text().splitlines()
    genre = lines[1 + line].split("\t")[1]
    lines[1 + line] = f"{name}\t{genre}"
    path.write_text("\n".join(lines) + "\n")


def refusal(fn, *names) -> str:
    """The outcome class of a reader call that should refuse its input with a message naming `names`."""
    try:
        fn()
    except (ValueError, FileNotFoundError) as exc:
        message = str(exc)
        return "clear" if "\n" not in message and all(str(n) in message for n in names) else "unclear"
    except Exception:
        return "traceback"
    return "accepted"


# ------------------------------------------------------------------------------------------ case 6: inside the root
def outside_file(tmp_path: Path, root: Path) -> Path:
    """A valid sample outside the root (a different array from any inside)."""
    secret = tmp_path / "outside" / "999.fused.full.npy"
    secret.parent.mkdir()
    secret.write_bytes(npy_bytes(np.full((140, 50), -7.0, np.float32)))
    return secret


@pytest.mark.parametrize("form", ["dotdot", "absolute"])
def test_label_names_outside_the_split_folder_are_refused(root, tmp_path, outcome, form):
    secret = outside_file(tmp_path, root)
    name = (os.path.relpath(secret, root / GENRE / "train") if form == "dotdot" else str(secret))
    relabel(root, 0, name)
    kind = refusal(lambda: readers.list_split(root, GENRE, "train"), "train_labels.txt:2")
    outcome("6", "security" if kind == "accepted" else kind)
    assert kind == "clear"
    skipped = readers.list_split(root, GENRE, "train", skip_bad=True)
    assert len(skipped.examples) == 39 and "train_labels.txt:2" in skipped.skipped[0].name


def test_sample_linked_outside_the_root_is_refused(root, tmp_path, outcome):
    secret = outside_file(tmp_path, root)
    _, path = first_train_file(root)
    path.unlink()
    path.symlink_to(secret)
    kind = refusal(lambda: readers.list_split(root, GENRE, "train"), "outside the dataset root")
    outcome("6", "security" if kind == "accepted" else kind)
    assert kind == "clear"


def test_sub_dataset_linked_outside_the_root_is_refused(root, tmp_path, outcome):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(root / GENRE, elsewhere)
    (root / GENRE).symlink_to(elsewhere)
    kind = refusal(lambda: readers.list_split(root, GENRE, "train"), "outside the dataset root")
    outcome("6", "security" if kind == "accepted" else kind)
    assert kind == "clear"


def test_genre_vocabulary_linked_outside_the_root_is_refused(root, tmp_path, outcome):
    names = sorted({row.split("\t")[1] for row in label_rows(root / GENRE / "train_labels.txt")})
    outside = tmp_path / "genres.txt"
    outside.write_text("".join(f"{n}\n" for n in names))
    (root / GENRE / "genres.txt").symlink_to(outside)
    kind = refusal(lambda: readers.genre_vocabulary(root, GENRE), "genres.txt", "outside the dataset root")
    outcome("6", "security" if kind == "accepted" else kind)
    assert kind == "clear"


def test_link_inside_the_root_is_read(root, outcome):
    """The rule refuses escapes, not links: a sample linked to another file of the root is read."""
    _, path = first_train_file(root)
    copy = root / "shared" / path.name
    copy.parent.mkdir()
    shutil.move(path, copy)
    path.symlink_to(copy)
    listing = readers.list_split(root, GENRE, "train")
    outcome("own", "ok" if len(listing.examples) == 40 else "silent")
    assert len(listing.examples) == 40


# ------------------------------------------------------------------------------------------ case 2: the fingerprint
def class_names_of_records(root: Path) -> dict[str, str]:
    """{track id: genre name} as a training run reads them: the records' class index, named through the root's
    genres.txt as it is now (a run's class names, its report and its export's labels come from it)."""
    from mgr_tf.data.prepare import prepare

    index = prepare(genre_config(root)).index["train"]
    names = readers.genre_vocabulary(root, GENRE)
    return {tid: names[g] for tid, g in zip(index["track_id"], index["genre"])}


def class_names_of_labels(root: Path) -> dict[str, str]:
    return {readers.track_id_from_name(r.split("\t")[0]): r.split("\t")[1]
            for r in label_rows(root / GENRE / "train_labels.txt")}


def test_reordered_genre_vocabulary_rebuilds_the_records(root, outcome):
    names = sorted({row.split("\t")[1] for row in label_rows(root / GENRE / "train_labels.txt")})
    vocabulary = root / GENRE / "genres.txt"
    vocabulary.write_text("".join(f"{n}\n" for n in names))
    assert class_names_of_records(root) == class_names_of_labels(root)
    vocabulary.write_text("".join(f"{n}\n" for n in reversed(names)))  # same names, other class indices
    right = class_names_of_records(root) == class_names_of_labels(root)
    outcome("2", "ok" if right else "silent")
    assert right


def test_edited_metadata_changes_the_fingerprint(root, outcome):
    from mgr_tf.data.prepare import fingerprint

    config = genre_config(root)
    before = fingerprint(root, config)
    features = root / "features.json"
    features.write_text(features.read_text().replace('"top_db": 80.0', '"top_db": 70.0'))
    changed = fingerprint(root, config) != before
    outcome("2", "ok" if changed else "silent")
    assert changed


def test_sample_edit_inside_the_root_changes_the_fingerprint(root, outcome):
    from mgr_tf.data.prepare import fingerprint

    config = genre_config(root)
    before = fingerprint(root, config)
    _, path = first_train_file(root)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = fingerprint(root, config) != before
    outcome("own", "ok" if changed else "silent")
    assert changed


# ------------------------------------------------------------------------------------------ case 5: caps
def bomb(path: Path, frames: int) -> Path:
    """A small .npy.gz whose array is (140, frames) zeros: megabytes once decompressed, kilobytes on disk."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (140, frames)})
    compressor = gzip.GzipFile(path, "wb", compresslevel=9, mtime=0)
    with compressor:
        compressor.write(header.getvalue())
        zeros = bytes(1 << 20)
        left = 140 * frames * 4
        while left:
            compressor.write(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))
    return path


def test_decompression_bomb_is_refused_from_its_header(tmp_path, outcome):
    path = bomb(tmp_path / "1.fused.full.npy.gz", 200_000)  # 112 MB of data in ~110 kB
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    started = time.perf_counter()
    kind = refusal(lambda: readers.load_spectrogram(path), str(path), "cap")
    seconds, (_, peak) = time.perf_counter() - started, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    outcome("5", "security" if kind == "accepted" else kind)
    assert kind == "clear"
    assert peak < 16 << 20 and seconds < 2.0  # the header alone was read


def test_bomb_in_a_root_is_refused_or_skipped_by_the_build(root, outcome):
    from mgr_tf.data.prepare import prepare

    _, path = first_train_file(root)
    path.unlink()
    bomb(path.with_name(path.name.removesuffix(".gz") + ".gz"), 200_000)
    kind = refusal(lambda: prepare(genre_config(root)), path.name.removesuffix(".gz"), "cap")
    outcome("5", "security" if kind == "accepted" else kind)
    assert kind == "clear"
    prepared = prepare(genre_config(root, skip_bad=True))
    assert len(prepared.index["train"]["track_id"]) == 39 and "frames" in prepared.skipped[0]


def test_caps_are_raised_by_their_flags(tmp_path):
    from mgr_tf.training.flags import build_parser, configs_from_args, parse_args

    path = tmp_path / "1.fused.full.npy"
    path.write_bytes(npy_bytes(np.ones((140, 3000), np.float32)))
    with pytest.raises(ValueError, match="3000 frames, more than the cap of 2000"):
        readers.load_spectrogram(path, frame_cap=2000)
    with pytest.raises(ValueError, match="MiB of array data, more than the cap of 1 MiB"):
        readers.load_spectrogram(path, size_cap_mb=1)
    data, *_ = configs_from_args(parse_args(build_parser(), ["--frame-cap", "500000", "--size-cap-mb", "2048"]))
    assert (data.frame_cap, data.size_cap_mb) == (500_000, 2048)
    assert readers.load_spectrogram(path, frame_cap=data.frame_cap).shape == (140, 3000)


# ------------------------------------------------------------------------------------------ sizes and kinds of arrays
def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


ARRAYS = {
    "empty file": (b"", "empty file"),
    "truncated gzip": (gz(npy_bytes(np.random.default_rng(0).normal(size=(140, 40))))[:3000], "truncated"),
    "truncated data": (gz(npy_bytes(np.ones((140, 40)))[:-100]), "truncated"),
    "not npy": (gz(b"hello world, not an array"), "not a readable .npy"),
    "one dimension": (gz(npy_bytes(np.ones(140))), "2-D"),
    "zero frames": (gz(npy_bytes(np.ones((140, 0)))), "0 frames"),
    "wrong bands": (gz(npy_bytes(np.ones((128, 40)))), "140 bands"),
    "nan": (gz(npy_bytes(np.full((140, 40), np.nan))), "NaN"),
    "huge values": (gz(npy_bytes(np.full((140, 40), 1e30))), "magnitude"),
}


@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_bad_arrays_are_refused_in_one_line(tmp_path, outcome, case):
    data, words = ARRAYS[case]
    path = tmp_path / "7.fused.full.npy.gz"
    path.write_bytes(data)
    kind = refusal(lambda: readers.load_spectrogram(path), str(path), words)
    outcome("5" if case == "huge values" else "own", "silent" if kind == "accepted" else kind)
    assert kind == "clear"


def test_pickled_array_is_never_unpickled(tmp_path, outcome):
    marker = tmp_path / "unpickled"
    payload = np.array([_Boom(str(marker))], dtype=object)
    buffer = io.BytesIO()
    np.save(buffer, payload, allow_pickle=True)
    path = tmp_path / "8.fused.full.npy"
    path.write_bytes(buffer.getvalue())
    kind = refusal(lambda: readers.load_spectrogram(path), str(path))
    outcome("own", "security" if marker.exists() else ("silent" if kind == "accepted" else kind))
    assert kind == "clear" and not marker.exists()


class _Boom:
    """Unpickling it creates a file: the proof that a reader unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path(self.path).touch, ())


def test_float64_and_fortran_order_arrays_are_read_exactly(tmp_path, outcome):
    array = np.asfortranarray(np.random.default_rng(0).normal(-20, 5, (140, 33)))
    path = tmp_path / "9.fused.full.npy"
    path.write_bytes(gz(npy_bytes(array))[:0] or _npy(array))
    read = readers.load_spectrogram(path)
    right = np.array_equal(read, array.astype(np.float32))
    outcome("own", "ok" if right else "silent")
    assert right


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)  # keeps float64 and Fortran order
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ names and encodings
def vocabulary_root(root: Path, text: bytes) -> tuple[Path, list[str]]:
    names = sorted({row.split("\t")[1] for row in label_rows(root / GENRE / "train_labels.txt")})
    (root / GENRE / "genres.txt").write_bytes(text.replace(b"NAMES", "\n".join(names).encode()))
    return root, names


def test_genre_vocabulary_with_a_byte_order_mark_is_read(root, outcome):
    root, names = vocabulary_root(root, b"\xef\xbb\xbfNAMES\n")
    try:
        listing = readers.list_split(root, GENRE, "train", skip_bad=True)
        vocabulary = readers.genre_vocabulary(root, GENRE)
        right = vocabulary == tuple(names) and len(listing.examples) == 40 and not listing.skipped
        kind = "ok" if right else "silent"
    except ValueError as exc:
        kind = "unclear" if "unknown genre" in str(exc) else "clear"
    outcome("10", kind)
    assert kind == "ok"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0c", "\x85"])
def test_genre_name_with_a_line_separator_is_refused_naming_it(root, outcome, separator):
    root, names = vocabulary_root(root, b"NAMES\n")
    path = root / GENRE / "genres.txt"
    path.write_text(path.read_text().replace(names[0], f"Hip{separator}Hop"))
    kind = refusal(lambda: readers.genre_vocabulary(root, GENRE), "genres.txt:1", f"U+{ord(separator):04X}")
    outcome("10", "silent" if kind == "accepted" else kind)
    assert kind == "clear"


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_label_file_in_another_encoding_is_named(root, outcome, encoding):
    path = root / GENRE / "train_labels.txt"
    text = path.read_text().replace("Rock", "Rock\u00e9" if encoding == "latin-1" else "Rock")
    path.write_bytes(text.encode(encoding))
    kind = refusal(lambda: readers.list_split(root, GENRE, "train"), "train_labels.txt", "UTF-8")
    outcome("own", "silent" if kind == "accepted" else kind)
    assert kind == "clear"


def test_windows_line_endings_are_read(root, outcome):
    path = root / GENRE / "train_labels.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    listing = readers.list_split(root, GENRE, "train")
    right = len(listing.examples) == 40 and all("\r" not in ex.genre for ex in listing.examples)
    outcome("own", "ok" if right else "silent")
    assert right


@pytest.mark.parametrize("name", ["a\x00b.fused.full.npy.gz", "..", "sub/1.fused.full.npy"])
def test_odd_label_names_are_refused_naming_the_line(root, outcome, name):
    relabel(root, 2, name)
    kind = refusal(lambda: readers.list_split(root, GENRE, "train"), "train_labels.txt:4")
    outcome("own", "silent" if kind == "accepted" else kind)
    assert kind == "clear"


def test_unicode_and_spaces_in_ids_are_read(root, outcome):
    name, path = first_train_file(root)
    new = "caf\u00e9 \u266b 12" + path.name[len(readers.track_id_from_name(path.name)):]
    path.rename(path.with_name(new))
    relabel(root, 0, "caf\u00e9 \u266b 12.fused.full.npy.gz")
    listing = readers.list_split(root, GENRE, "train")
    right = listing.examples[0].track_id == "caf\u00e9 \u266b 12"
    outcome("own", "ok" if right else "silent")
    assert right
