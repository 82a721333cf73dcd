"""Sample and label readers: both file variants, and every bad input named with file and line."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mgr_tf.data import layout
from mgr_tf.data import readers as mgr_io


def _array(frames=5, bands=140, seed=0):
    return np.random.default_rng(seed).normal(size=(bands, frames)).astype(np.float32)


@pytest.mark.parametrize("gz", [False, True])
def test_load_spectrogram_either_suffix(tmp_path, gz):
    array = _array()
    layout.write_sample(tmp_path, 7, array, gz=gz)
    for name in ("7.fused.full.npy", "7.fused.full.npy.gz"):  # label files name .gz either way
        loaded = mgr_io.load_spectrogram(tmp_path / name)
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, array)


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "spectrogram file not found"),
    ("empty", "empty file"),
    ("truncated", "truncated or corrupt"),
    ("not_gzip", "not a gzip file"),
    ("bad_gzip", "corrupt or truncated gzip"),
    ("rank", "expected a 2-D (bands, time) array"),
    ("bands", "expected 140 bands"),
    ("frames", "empty spectrogram (0 frames)"),
    ("nan", "NaN/Inf"),
])
def test_load_spectrogram_errors_name_the_file(tmp_path, case, message):
    good = layout.npy_bytes(_array())
    name = "1.fused.full.npy"
    if case == "missing":
        path = tmp_path / name
    elif case == "empty":
        path = _write(tmp_path, name, b"")
    elif case == "truncated":
        path = _write(tmp_path, name, good[: len(good) // 2])
    elif case == "not_gzip":
        path = _write(tmp_path, name + ".gz", good)
    elif case == "bad_gzip":
        path = _write(tmp_path, name + ".gz", gzip.compress(good)[:40])
    elif case == "rank":
        path = _write(tmp_path, name, layout.npy_bytes(np.zeros((2, 140, 3), np.float32)))
    elif case == "bands":
        path = _write(tmp_path, name, layout.npy_bytes(_array(bands=128)))
    elif case == "frames":
        path = _write(tmp_path, name, layout.npy_bytes(np.zeros((140, 0), np.float32)))
    else:
        bad = _array()
        bad[3, 2] = np.nan
        path = _write(tmp_path, name, layout.npy_bytes(bad))
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        mgr_io.load_spectrogram(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_genre_labels_read(tmp_path):
    path = layout.write_genre_labels(tmp_path / "train_labels.txt", [(5, "Rock"), (6, "Old-Time")])
    rows, skipped = mgr_io.read_genre_labels(path)
    assert [(r[1], r[2]) for r in rows] == [("5.fused.full.npy.gz", "Rock"), ("6.fused.full.npy.gz", "Old-Time")]
    assert [r[0] for r in rows] == [2, 3] and skipped == []


GENRE_HEADER = "Id\tGenre\n"


def test_genre_labels_empty_split(tmp_path):
    path = tmp_path / "test_labels.txt"
    path.write_text(GENRE_HEADER)
    with pytest.raises(ValueError, match="empty split"):
        mgr_io.read_genre_labels(path)


def test_genre_labels_skip_bad(tmp_path):
    path = tmp_path / "train_labels.txt"
    path.write_text(GENRE_HEADER + "1.fused.full.npy.gz\tRock\n2.fused.full.npy.gz\tPolka\n")
    rows, skipped = mgr_io.read_genre_labels(path, skip_bad=True)
    assert [r[1] for r in rows] == ["1.fused.full.npy.gz"]
    assert len(skipped) == 1 and skipped[0].name == f"{path}:3" and "Polka" in skipped[0].reason


EMOTION_HEADER = "Id,valence,energy,danceability\n"


def test_emotion_labels_read(tmp_path):
    path = layout.write_emotion_labels(tmp_path / "train_labels.txt", [(9, 0.1, 0.5, 1.0)])
    rows, _ = mgr_io.read_emotion_labels(path)
    assert rows == [(2, "9", (0.1, 0.5, 1.0))]
    assert mgr_io.read_target_names(path) == ("valence", "energy", "danceability")


def test_any_regression_targets_are_read_by_name(tmp_path):
    """The targets are the label CSV's columns: any names, any number."""
    path = layout.write_emotion_labels(tmp_path / "train_labels.txt", [("a", 0.25, 1.0), ("b", 0.0, 0.5)],
                                       targets=("calmness", "joyful_activation"))
    assert path.read_text().splitlines()[0] == "Id,calmness,joyful_activation"
    assert mgr_io.read_target_names(path) == ("calmness", "joyful_activation")
    rows, _ = mgr_io.read_emotion_labels(path)
    assert rows == [(2, "a", (0.25, 1.0)), (3, "b", (0.0, 0.5))]
    single = layout.write_emotion_labels(tmp_path / "one.txt", [("a", 0.5)], targets=("arousal",))
    assert mgr_io.read_emotion_labels(single)[0] == [(2, "a", (0.5,))]


@pytest.mark.parametrize("reader, text, line, message", [
    (mgr_io.read_genre_labels, "5.fused.full.npy.gz\tRock\n", 1, "missing header"),
    (mgr_io.read_genre_labels, GENRE_HEADER + "5.fused.full.npy.gz,Rock\n", 2, "one tab"),
    (mgr_io.read_genre_labels, GENRE_HEADER + "5.fused.full.npy.gz\tPolka\n", 2, "unknown genre 'Polka'"),
    (mgr_io.read_genre_labels, GENRE_HEADER + "5.fused.full.npy.gz\tRock\n5.fused.full.npy.gz\tJazz\n", 3,
     "duplicate id '5'"),
    (mgr_io.read_emotion_labels, "9,0.1,0.2,0.3\n", 1, "missing header"),
    (mgr_io.read_emotion_labels, "Id\tvalence\tenergy\tdanceability\n", 1, "wrong delimiter"),
    (mgr_io.read_emotion_labels, "Track,valence,energy,danceability\n", 1, "expected the header"),
    (mgr_io.read_emotion_labels, "Id\n", 1, "no regression targets"),
    (mgr_io.read_emotion_labels, "Id,calm,calm\n", 1, "'calm' is named twice"),
    (mgr_io.read_emotion_labels, "Id,genre\n", 1, "'genre' is reserved"),
    (mgr_io.read_emotion_labels, "Id,joyful activation\n", 1, "not a plain name"),
    (mgr_io.read_emotion_labels, "Id,calmness,power\n9,0.1\n", 2, "expected 3 comma-separated fields"),
    (mgr_io.read_emotion_labels, EMOTION_HEADER + "9;0.1;0.2;0.3\n", 2, "4 comma-separated fields"),
    (mgr_io.read_emotion_labels, EMOTION_HEADER + "9,0.1,high,0.3\n", 2, "energy 'high' is not a number"),
    (mgr_io.read_emotion_labels, EMOTION_HEADER + "9,0.1,0.2,1.5\n", 2, "danceability 1.5 is outside [0, 1]"),
    (mgr_io.read_emotion_labels, EMOTION_HEADER + "9,0.1,0.2,0.3\n9,0.1,0.2,0.3\n", 3, "duplicate id '9'"),
])
def test_label_errors_name_file_and_line(tmp_path, reader, text, line, message):
    path = tmp_path / "train_labels.txt"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        reader(path)
    assert f"{path}:{line}:" in str(info.value)
    assert message in str(info.value)


def _small_root(tmp_path, *, test_labels=True):
    sub = tmp_path / "multitask_dataset"
    for split, ids in (("train", (1, 2, 3)), ("test", (4, 5))):
        for i in ids:
            layout.write_sample(sub / split, i, _array(seed=i), gz=bool(i % 2))
        if split == "train" or test_labels:
            layout.write_emotion_labels(sub / f"{split}_labels.txt", [(i, 0.5, 0.5, 0.5) for i in ids])
    return tmp_path


def test_list_split_and_unlabelled_test(tmp_path):
    root = _small_root(tmp_path, test_labels=False)
    train = mgr_io.list_split(root, "multitask_dataset", "train")
    assert train.labelled and [e.track_id for e in train.examples] == ["1", "2", "3"]
    assert train.examples[0].path.name == "1.fused.full.npy.gz"
    test = mgr_io.list_split(root, "multitask_dataset", "test")
    assert not test.labelled and [e.track_id for e in test.examples] == ["4", "5"]
    assert all(not e.labelled and e.targets is None for e in test.examples)


def test_label_line_naming_a_missing_file(tmp_path):
    root = _small_root(tmp_path)
    (root / "multitask_dataset" / "train" / "2.fused.full.npy").unlink()
    labels = root / "multitask_dataset" / "train_labels.txt"
    with pytest.raises(FileNotFoundError) as info:
        mgr_io.list_split(root, "multitask_dataset", "train")
    assert f"{labels}:3: names a missing file" in str(info.value)
    listing = mgr_io.list_split(root, "multitask_dataset", "train", skip_bad=True)
    assert [e.track_id for e in listing.examples] == ["1", "3"]
    assert [s.name for s in listing.skipped] == [f"{labels}:3"]


def test_corrupt_file_skipped_with_check_files(tmp_path):
    root = _small_root(tmp_path)
    bad = root / "multitask_dataset" / "train" / "3.fused.full.npy.gz"
    bad.write_bytes(b"not gzip")
    listing = mgr_io.list_split(root, "multitask_dataset", "train", skip_bad=True, check_files=True)
    assert [e.track_id for e in listing.examples] == ["1", "2"]
    assert listing.skipped[0].name == str(bad) and "not a gzip file" in listing.skipped[0].reason


def test_root_lacking_sub_dataset(tmp_path):
    root = _small_root(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        mgr_io.list_split(root, "fma_genre_spectrograms_beat", "train")
    text = str(info.value)
    assert "missing sub-dataset folder 'fma_genre_spectrograms_beat'" in text
    assert "train_labels.txt" in text and "found: multitask_dataset" in text


def test_missing_train_labels(tmp_path):
    root = _small_root(tmp_path)
    (root / "multitask_dataset" / "train_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match="missing label file of the train split"):
        mgr_io.list_split(root, "multitask_dataset", "train")
