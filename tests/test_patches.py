"""Patch training: random crops in the pipeline, multi-window averaging in the graph, augmentation layers."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from mgr_tf import data
from mgr_tf.core.config import DataConfig
from mgr_tf.data import resolve
from mgr_tf.models import model_config
from mgr_tf.models.build import build_model
from mgr_tf.models.layers import RandomGain, SpecAugment, SplitWindows, WindowMean
from mgr_tf.tasks import get_task
from tests.conftest import TINY_CNN, export_dir, run_train


def test_split_windows_counts_and_weights():
    x = np.zeros((2, 300, 3), np.float32)
    x[0, :300] = 1.0
    x[1, :100] = 1.0  # the rest is padding
    windows, weights = SplitWindows(128, 64)(x)
    assert tuple(windows.shape) == (2 * 4, 128, 3)  # 1 + ceil((300 - 128) / 64) windows
    np.testing.assert_allclose(weights[0], [1, 1, 1, 108 / 128], rtol=1e-6)
    np.testing.assert_allclose(weights[1], [100 / 128, 36 / 128, 0, 0], rtol=1e-6)
    short, w = SplitWindows(128, 64)(x[:, :50])
    assert tuple(short.shape) == (2, 128, 3) and w.shape == (2, 1)


def test_window_mean_is_the_weighted_mean_and_skips_padding():
    emb = np.arange(8, dtype=np.float32).reshape(4, 2)  # 2 clips x 2 windows
    weights = np.array([[1.0, 0.5], [0.0, 0.0]], np.float32)
    out = WindowMean()([emb, weights]).numpy()
    np.testing.assert_allclose(out[0], (emb[0] * 1.0 + emb[1] * 0.5) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(out[1], emb[2:].mean(0), rtol=1e-6)  # all padding: plain mean


def test_multi_window_model_averages_window_embeddings():
    keras.utils.set_random_seed(0)
    model = build_model(model_config("cnn", cnn_channels=(4, 4, 8, 8)), get_task("genre"), num_bands=12, frames=32,
                        num_classes=3, window_hop=16)
    embed = keras.Model(model.input, model.get_layer("embedding").output)
    x = np.random.default_rng(0).normal(size=(1, 64, 12)).astype(np.float32)
    full = embed({"spectrogram": x}).numpy()
    parts = [embed({"spectrogram": x[:, s:s + 32]}).numpy() for s in (0, 16, 32)]
    np.testing.assert_allclose(full, np.mean(parts, axis=0), atol=1e-5)
    assert model({"spectrogram": x[:, :7]})["genre"].shape == (1, 3)  # any length


def test_augmentation_is_identity_at_inference_and_seeded_in_training():
    x = np.random.default_rng(1).normal(size=(4, 50, 20)).astype(np.float32) + 5.0
    x[:, 40:] = 0.0  # padding stays padding
    aug = SpecAugment(2, 10, 2, 5, seed=3)
    np.testing.assert_array_equal(aug(x, training=False), x)
    masked = aug(x, training=True).numpy()
    assert 0 < np.mean(masked[:, :40] == 0) < 0.6
    again = SpecAugment(2, 10, 2, 5, seed=3)(x, training=True).numpy()
    np.testing.assert_array_equal(masked, again)
    gain = RandomGain(6.0, 12, seed=0)
    np.testing.assert_array_equal(gain(x, training=False), x)
    shifted = gain(x, training=True).numpy()
    offsets = shifted[:, 0, :12] - x[:, 0, :12]
    assert np.all(np.abs(offsets) <= 6.0) and np.allclose(offsets, offsets[:, :1], atol=1e-5)
    np.testing.assert_array_equal(shifted[:, :, 12:], x[:, :, 12:])  # not-dB bands untouched
    np.testing.assert_array_equal(shifted[:, 40:], 0.0)


def test_random_patches_are_fresh_each_epoch_and_reproducible(tiny_corpus):
    cfg = DataConfig(data_dir=str(tiny_corpus), task="genre", features="fused", batch_size=40, patch_frames=32,
                     shuffle_buffer=1)
    ds = data.make_dataset(cfg, "train", shuffle=False)
    first, second = [next(iter(ds))[0]["spectrogram"].numpy() for _ in range(2)]
    assert first.shape[1:] == (32, 140)
    assert not np.array_equal(first, second)  # another crop each epoch
    again = next(iter(data.make_dataset(cfg, "train", shuffle=False)))[0]["spectrogram"].numpy()
    np.testing.assert_array_equal(first, again)
    info = data.dataset_info(cfg)
    assert (info.model_frames, info.window_hop, info.frames) == (32, 16, resolve(cfg).frames)
    full = next(iter(data.make_dataset(cfg, "validation")))[0]["spectrogram"]
    assert full.shape[1] == resolve(cfg).frames  # evaluation sees whole clips


def test_mixup_pairs_each_mixed_batch_with_both_label_sets(tiny_corpus):
    cfg = DataConfig(data_dir=str(tiny_corpus), task="genre", features="chroma", batch_size=8, patch_frames=16,
                     mixup=0.4)
    plain = dataclasses.replace(cfg, mixup=0.0)
    (x, y, w), = data.make_dataset(cfg, "train", shuffle=False).take(1)
    (x0, y0), = data.make_dataset(plain, "train", shuffle=False).take(1)
    x, y, w = x["spectrogram"].numpy(), y["genre"].numpy(), w.numpy()
    n = len(y0["genre"])
    assert x.shape[0] == 2 * n and np.array_equal(x[:n], x[n:])
    np.testing.assert_array_equal(y[:n], y0["genre"])  # first half: the batch's own labels
    lam = w[0]
    assert 0 < lam < 1 and np.allclose(w[:n], lam) and np.allclose(w[n:], 1 - lam)
    perm = [int(np.flatnonzero(y0["genre"] == label)[0]) for label in y[n:]]  # labels of the partners
    assert sorted(y[n:]) == sorted(y0["genre"]) and len(perm) == n
    (again, _, w2), = data.make_dataset(cfg, "train", shuffle=False).take(1)
    np.testing.assert_array_equal(again["spectrogram"].numpy(), x)
    assert w2.numpy()[0] == lam


@pytest.mark.slow
def test_patch_trained_run_exports_a_model_that_takes_any_length(tiny_corpus, tmp_path):
    from mgr_tf.serving.requests import load_signature

    _, report = run_train(["--data-dir", str(tiny_corpus), "--epochs", "1", *TINY_CNN, "--patch-frames", "64",
                           "--time-masks", "1", "--freq-masks", "1", "--gain-db", "3",
                           "--mixup", "0.4"], tmp_path, export="patched")
    assert report["metrics"]["genre"]["num_examples"] == report["counts"]["test"] > 0
    fn = load_signature(export_dir((None, report)))
    for frames in (30, 64, 300):
        out = fn(spectrogram=np.ones((2, frames, 140), np.float32))
        assert out["probabilities"].shape == (2, 10)
