"""The tf.data pipeline on the shared tiny synthetic corpus: shapes, labels, splits, stats, errors."""

from __future__ import annotations

import collections
import shutil

import numpy as np
import pytest

from mgr_tf import data
from mgr_tf.core.config import DataConfig
from mgr_tf.core.published import EMOTIONS, GENRE_MAP_20_TO_10, GENRES_10, GENRES_20
from mgr_tf.data import readers as mgr_io
from mgr_tf.data import resolve


def _cfg(root, **kw):
    kw.setdefault("batch_size", 16)
    kw = {"features": "fused", "patch_frames": None, **kw}
    return DataConfig(data_dir=str(root), **kw)


def _collect(ds):
    """All elements of a batched dataset, unbatched, as numpy."""
    xs, ys, ids = [], collections.defaultdict(list), []
    for features, targets in ds.as_numpy_iterator():
        xs.extend(features["spectrogram"])
        ids.extend(t.decode() for t in features.get("track_id", []))
        for k, v in targets.items():
            ys[k].extend(v)
    return xs, {k: np.asarray(v) for k, v in ys.items()}, ids


def _files(root, sub, split):
    return {e.track_id: e for e in mgr_io.list_split(root, sub, split).examples}


@pytest.fixture(scope="module")
def genre_full(tiny_corpus):
    cfg = _cfg(tiny_corpus)
    return cfg, {s: _collect(data.make_dataset(cfg, s, with_ids=True)) for s in data.SPLITS}


def test_genre_full_shapes_labels_and_padding(tiny_corpus, genre_full):
    cfg, splits = genre_full
    examples = {**_files(tiny_corpus, resolve(cfg).sub_dataset, "train"), **_files(tiny_corpus, resolve(cfg).sub_dataset, "test")}
    seen = 0
    for split, (xs, ys, ids) in splits.items():
        if split == "train":
            assert sorted(ids) == sorted(data.split_ids(cfg, split))
        else:
            assert ids == data.split_ids(cfg, split)  # evaluation order is retrievable
        for x, label, track_id in zip(xs, ys["genre"], ids):
            ex = examples[track_id]
            assert x.shape == (1293, 140) and x.dtype == np.float32
            assert GENRES_10[label] == GENRE_MAP_20_TO_10[ex.genre]  # mapping matches the label file
            array = mgr_io.load_spectrogram(ex.path)
            np.testing.assert_array_equal(x[: array.shape[1]], array.T)
            assert not x[array.shape[1]:].any()  # zero padding
            seen += 1
    dropped = [t for t, e in examples.items() if GENRE_MAP_20_TO_10[e.genre] is None]
    assert dropped and not set(dropped) & {t for _, _, ids in splits.values() for t in ids}
    assert seen == len(examples) - len(dropped)
    info = data.dataset_info(cfg)
    assert info.class_names == GENRES_10 and info.num_classes == 10 and info.test_labelled
    assert info.counts == {s: len(splits[s][2]) for s in data.SPLITS}


def test_validation_split_disjoint_deterministic_stratified(tiny_corpus, genre_full):
    cfg, splits = genre_full
    train, val = set(splits["train"][2]), set(splits["validation"][2])
    assert val and not train & val
    eligible = [t for t, e in _files(tiny_corpus, resolve(cfg).sub_dataset, "train").items()
                if GENRE_MAP_20_TO_10[e.genre]]
    assert train | val == set(eligible)
    assert len(val) == round(cfg.val_fraction * len(eligible))
    assert data.split_ids(cfg, "validation") == data.split_ids(_cfg(tiny_corpus, batch_size=7), "validation")
    assert set(data.split_ids(_cfg(tiny_corpus, seed=3), "validation")) != val
    # Stratified: each class's share of the validation split is within one example of its quota.
    labels = dict(zip(splits["train"][2] + splits["validation"][2],
                      np.concatenate([splits["train"][1]["genre"], splits["validation"][1]["genre"]])))
    per_class = collections.Counter(labels.values())
    val_class = collections.Counter(labels[t] for t in val)
    for c, n in per_class.items():
        assert abs(val_class[c] - len(val) * n / len(eligible)) < 1.0


def test_norm_stats_from_train_minus_validation_only(tiny_corpus, genre_full):
    cfg, splits = genre_full
    examples = _files(tiny_corpus, resolve(cfg).sub_dataset, "train")
    frames = np.concatenate([mgr_io.load_spectrogram(examples[t].path) for t in splits["train"][2]], axis=1)
    info = data.dataset_info(cfg)
    np.testing.assert_allclose(info.norm_mean, frames.mean(axis=1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(info.norm_std, frames.std(axis=1), rtol=1e-4, atol=1e-4)
    chroma = data.dataset_info(_cfg(tiny_corpus, features="chroma"))
    assert chroma.num_bands == 12
    np.testing.assert_allclose(chroma.norm_mean, info.norm_mean[128:], rtol=1e-6)


@pytest.mark.parametrize("features, lo, hi", [("mel", 0, 128), ("chroma", 128, 140)])
def test_band_selection_and_crop_beat(tiny_corpus, features, lo, hi):
    cfg = _cfg(tiny_corpus, beat=True, features=features, max_frames=10)
    xs, _, ids = _collect(data.make_dataset(cfg, "test", with_ids=True))
    examples = _files(tiny_corpus, resolve(cfg).sub_dataset, "test")
    for x, track_id in zip(xs, ids):
        array = mgr_io.load_spectrogram(examples[track_id].path)[lo:hi, :10].T
        assert x.shape == (10, hi - lo)
        np.testing.assert_array_equal(x[: len(array)], array)


def test_variable_length_bucketing(tiny_corpus):
    cfg = _cfg(tiny_corpus, beat=True, variable_length=True, batch_size=4)
    lengths = {e.track_id: mgr_io.load_spectrogram(e.path).shape[1]
               for e in _files(tiny_corpus, resolve(cfg).sub_dataset, "train").values()}
    seen = []
    for features, _ in data.make_dataset(cfg, "train", with_ids=True).as_numpy_iterator():
        x, ids = features["spectrogram"], [t.decode() for t in features["track_id"]]
        batch_lengths = [lengths[t] for t in ids]
        assert x.shape[1] == max(batch_lengths)  # padded to the longest in its batch only
        for row, n in zip(x, batch_lengths):
            assert np.abs(row[:n]).sum(axis=1).min() > 0 and not row[n:].any()
        seen += ids
    assert sorted(seen) == sorted(data.split_ids(cfg, "train"))
    # Evaluation splits keep their order with variable length too.
    _, _, ids = _collect(data.make_dataset(cfg, "validation", with_ids=True))
    assert ids == data.split_ids(cfg, "validation")


def test_train_shuffle_seeded(tiny_corpus):
    cfg = _cfg(tiny_corpus, beat=True)
    first = _collect(data.make_dataset(cfg, "train", with_ids=True))[2]
    again = _collect(data.make_dataset(cfg, "train", with_ids=True))[2]
    assert first == again and first != data.split_ids(cfg, "train")


def test_twenty_genres_keep_raw_labels(tiny_corpus):
    cfg = _cfg(tiny_corpus, beat=True, num_genres=20)
    _, ys, ids = _collect(data.make_dataset(cfg, "test", with_ids=True))
    examples = _files(tiny_corpus, resolve(cfg).sub_dataset, "test")
    assert [GENRES_20[g] for g in ys["genre"]] == [examples[t].genre for t in ids]
    assert len(ids) == len(examples)


@pytest.mark.parametrize("task", ["multitask", "energy"])
def test_emotion_targets(tiny_corpus, task):
    cfg = _cfg(tiny_corpus, task=task, beat=task == "energy")
    _, ys, ids = _collect(data.make_dataset(cfg, "validation", with_ids=True))
    examples = _files(tiny_corpus, resolve(cfg).sub_dataset, "train")
    names = EMOTIONS if task == "multitask" else (task,)
    assert tuple(ys) == names
    for name in names:
        assert ys[name].shape == (len(ids), 1) and ys[name].dtype == np.float32
        expected = [examples[t].targets[EMOTIONS.index(name)] for t in ids]
        np.testing.assert_allclose(ys[name][:, 0], expected, rtol=1e-6)
    info = data.dataset_info(cfg)
    assert info.num_classes == 0 and info.output_names == names
    assert sum(info.counts[s] for s in ("train", "validation")) == len(examples)


def _copy_sub(tiny_corpus, tmp_path, sub="multitask_dataset_beat"):
    root = tmp_path / "root"
    shutil.copytree(tiny_corpus / sub, root / sub)
    return root


def test_unlabelled_test_split(tiny_corpus, tmp_path):
    root = _copy_sub(tiny_corpus, tmp_path)
    (root / "multitask_dataset_beat" / "test_labels.txt").unlink()
    cfg = _cfg(root, task="multitask", beat=True)
    info = data.dataset_info(cfg)
    assert not info.test_labelled and info.counts["test"] == 12
    _, ys, _ = _collect(data.make_dataset(cfg, "test", with_ids=True))
    assert all((ys[name] == -1.0).all() for name in EMOTIONS)


def test_prepared_data_of_different_roots_do_not_collide(tiny_corpus, tmp_path):
    cfg = _cfg(tiny_corpus, task="multitask", beat=True)
    root = _copy_sub(tiny_corpus, tmp_path)
    other = _cfg(root, task="multitask", beat=True)
    assert data.fingerprint(tiny_corpus, cfg) != data.fingerprint(root, other)
    before = data.fingerprint(root, other)
    labels = root / "multitask_dataset_beat" / "train_labels.txt"
    labels.write_text(labels.read_text().replace("0.", "0.0", 1))
    assert data.fingerprint(root, other) != before


def test_bad_label_line_named(tiny_corpus, tmp_path):
    root = _copy_sub(tiny_corpus, tmp_path, "fma_genre_spectrograms_beat")
    labels = root / "fma_genre_spectrograms_beat" / "train_labels.txt"
    lines = labels.read_text().splitlines()
    lines[3] = lines[3].split("\t")[0] + "\tPolka"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{labels}:4: unknown genre 'Polka'"):
        data.make_dataset(_cfg(root, beat=True), "train")
    info = data.dataset_info(_cfg(root, beat=True, skip_bad=True))
    assert len(info.skipped) == 1 and f"{labels}:4" in info.skipped[0]


def test_corrupt_sample_named_and_skipped(tiny_corpus, tmp_path):
    root = _copy_sub(tiny_corpus, tmp_path, "fma_genre_spectrograms_beat")
    victim = sorted((root / "fma_genre_spectrograms_beat" / "test").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(ValueError, match=victim.name):
        data.dataset_info(_cfg(root, beat=True, num_genres=20))
    info = data.dataset_info(_cfg(root, beat=True, num_genres=20, skip_bad=True))
    assert info.counts["test"] == 19
    assert len(info.skipped) == 1 and str(victim) in info.skipped[0]


def test_root_lacking_sub_dataset(tiny_corpus, tmp_path):
    root = _copy_sub(tiny_corpus, tmp_path)
    with pytest.raises(FileNotFoundError, match="missing sub-dataset folder 'fma_genre_spectrograms'"):
        data.make_dataset(_cfg(root), "train")


def test_default_corpus_is_reused(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MGR_TF_HOME", str(tmp_path))
    from mgr_tf.core.paths import default_corpus_dir

    shutil.copytree(tiny_corpus, default_corpus_dir(0))
    assert data.resolve_root(DataConfig()) == default_corpus_dir(0).resolve()
