"""Shared checks for every model family x head (keras-hub style): shapes, one fit step, save/load, export."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.genres import EMOTIONS
from mgr_tf.losses import task_losses
from mgr_tf.models import task_outputs

BANDS = 12
FRAMES = 32
NUM_CLASSES = 4


def random_batch(rng: np.random.Generator, batch: int, frames: int = FRAMES, bands: int = BANDS) -> np.ndarray:
    """Raw-looking spectrogram values (never exactly 0, so no frame reads as padding)."""
    return (rng.standard_normal((batch, frames, bands)) * 3.0 + 5.0).astype(np.float32)


def make_targets(rng: np.random.Generator, task: str, batch: int) -> dict:
    """Targets in the dataset's documented structure: {"genre": int32} or {"<emotion>": float32 (1,)}."""
    if task == "genre":
        return {"genre": rng.integers(0, NUM_CLASSES, batch).astype(np.int32)}
    return {name: rng.random((batch, 1)).astype(np.float32) for name in task_outputs(task)}


def make_dataset(task: str, *, examples: int = 8, batch: int = 4, seed: int = 0) -> tf.data.Dataset:
    """A tf.data dataset of `(features, targets)` elements, `features = {"spectrogram": x}`."""
    rng = np.random.default_rng(seed)
    features = {"spectrogram": random_batch(rng, examples)}
    return tf.data.Dataset.from_tensor_slices((features, make_targets(rng, task, examples))).batch(batch)


def check_output_structure(model: keras.Model, task: str, batch: int = 3, frames: int = FRAMES) -> dict:
    """Outputs are a dict keyed by the task's output names with the documented shapes and ranges."""
    x = random_batch(np.random.default_rng(1), batch, frames)
    out = model({"spectrogram": x}, training=False)
    assert isinstance(out, dict), type(out)
    assert set(out) == set(task_outputs(task)), set(out)
    for name, value in out.items():
        value = np.asarray(value)
        if name == "genre":
            assert value.shape == (batch, NUM_CLASSES)
            np.testing.assert_allclose(value.sum(axis=1), 1.0, rtol=1e-5)
        else:
            assert name in EMOTIONS
            assert value.shape == (batch, 1)
            assert np.all((value >= 0.0) & (value <= 1.0))
    return out


def check_fit_step(model: keras.Model, task: str, jit_compile="auto") -> None:
    """One epoch of two steps on tf.data changes the weights and gives a finite loss.

    `jit_compile="auto"` is what `model.fit` uses by default (XLA on CPU), so it is the default here.
    """
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=task_losses(task), jit_compile=jit_compile)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(make_dataset(task), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "fit changed no weight"


def check_save_load(model: keras.Model, tmp_path: Path) -> None:
    """A .keras round trip reproduces the outputs exactly."""
    x = {"spectrogram": random_batch(np.random.default_rng(2), 2)}
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    expected, got = model(x, training=False), loaded(x, training=False)
    for name in expected:
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(expected[name]), atol=1e-6)


def check_export(model: keras.Model, tmp_path: Path, lengths=(FRAMES,)) -> None:
    """SavedModel export: the serving signature takes `spectrogram` and returns the named outputs."""
    path = tmp_path / "export"
    model.export(str(path), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    for frames in lengths:
        x = random_batch(np.random.default_rng(frames), 2, frames)
        served = signature(spectrogram=tf.constant(x))
        expected = model({"spectrogram": x}, training=False)
        assert set(served) == set(expected), set(served)
        for name in expected:
            np.testing.assert_allclose(served[name].numpy(), np.asarray(expected[name]), atol=1e-5)


def run_all_checks(model: keras.Model, task: str, tmp_path: Path, *, export_lengths=(FRAMES,)) -> None:
    """Every harness check in order: structure, fit step, .keras round trip, SavedModel export."""
    check_output_structure(model, task)
    check_fit_step(model, task)
    check_save_load(model, tmp_path)
    check_export(model, tmp_path, export_lengths)
