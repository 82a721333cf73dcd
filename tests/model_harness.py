"""Shared checks for every registered backbone x task (keras-hub style): shapes, one fit step, save/load, export.

Families and tasks come from the registries (`BACKBONES`, `TASKS`); each family is built at the small
sizes of its `Backbone.test_options`, so a newly registered family or task is covered without editing
the tests.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.core.config import ModelConfig
from mgr_tf.models import BACKBONES, model_config
from mgr_tf.models.build import build_model
from mgr_tf.tasks import RegressionTask, task_for, task_losses

BANDS = 12
FRAMES = 32
NUM_CLASSES = 4
# Lengths the SavedModel is served at: variable-length families take any; fixed-length ones pad or crop
# in-graph, so shorter and longer inputs work too.
VARIABLE_LENGTHS = (FRAMES, 13, 45)
FIXED_LENGTHS = (FRAMES, 40)


def tiny_config(family: str, **overrides) -> ModelConfig:
    """The family at its `test_options` sizes (dropout 0.1 so the head's dropout layer is exercised)."""
    return model_config(family, **{"dropout": 0.1, **BACKBONES[family].test_options, **overrides})


def family_bands(family: str) -> int:
    """The bands a family's tiny model takes: BANDS, or the input a pretrained encoder requires."""
    return BACKBONES[family].input_bands or BANDS


def model_bands(model: keras.Model) -> int:
    """The bands per frame of a model's `spectrogram` input."""
    return int(model.inputs[0].shape[-1])


def tiny_model(family: str, task: str, *, config: ModelConfig | None = None, **kwargs) -> keras.Model:
    """A `build_model` result with `family_bands` bands, FRAMES frames, NUM_CLASSES classes and seeded statistics."""
    rng = np.random.default_rng(0)
    bands = family_bands(family)
    return build_model(config or tiny_config(family), task_for(task), num_bands=bands, frames=FRAMES,
                       num_classes=NUM_CLASSES, norm_mean=rng.random(bands) * 5, norm_std=rng.random(bands) + 2,
                       **kwargs)


def serving_lengths(family: str) -> tuple[int, ...]:
    """The input lengths `check_export` serves a family's model at."""
    return VARIABLE_LENGTHS if BACKBONES[family].variable_length else FIXED_LENGTHS


def random_batch(rng: np.random.Generator, batch: int, frames: int = FRAMES, bands: int = BANDS) -> np.ndarray:
    """Raw-looking spectrogram values (never exactly 0, so no frame reads as padding)."""
    return (rng.standard_normal((batch, frames, bands)) * 3.0 + 5.0).astype(np.float32)


def make_targets(rng: np.random.Generator, task: str, batch: int) -> dict:
    """Targets in the task's documented structure: class indices (int32) or floats in [0, 1] of its shapes."""
    spec = task_for(task)
    if spec.classification:
        return {name: rng.integers(0, NUM_CLASSES, (batch, *shape)).astype(np.int32)
                for name, shape in spec.target_shapes().items()}
    return {name: rng.random((batch, *shape)).astype(np.float32) for name, shape in spec.target_shapes().items()}


def make_dataset(task: str, *, examples: int = 8, batch: int = 4, seed: int = 0, bands: int = BANDS) -> tf.data.Dataset:
    """A tf.data dataset of `(features, targets)` elements, `features = {"spectrogram": x}`."""
    rng = np.random.default_rng(seed)
    features = {"spectrogram": random_batch(rng, examples, bands=bands)}
    return tf.data.Dataset.from_tensor_slices((features, make_targets(rng, task, examples))).batch(batch)


def check_output_structure(model: keras.Model, task: str, batch: int = 3, frames: int = FRAMES) -> dict:
    """Outputs are a dict keyed by the task's output names with the documented shapes and ranges.

    Classification outputs are (batch, NUM_CLASSES) probabilities; others have the task's target shape,
    and emotion outputs (sigmoids) lie in [0, 1].
    """
    spec = task_for(task)
    x = random_batch(np.random.default_rng(1), batch, frames, model_bands(model))
    out = model({"spectrogram": x}, training=False)
    assert isinstance(out, dict), type(out)
    assert set(out) == set(spec.outputs), set(out)
    shapes = spec.target_shapes()
    for name, value in out.items():
        value = np.asarray(value)
        assert np.all(np.isfinite(value)), name
        if spec.classification:
            assert value.shape == (batch, NUM_CLASSES), (name, value.shape)
            np.testing.assert_allclose(value.sum(axis=1), 1.0, rtol=1e-5)
        else:
            assert value.shape == (batch, *shapes[name]), (name, value.shape)
        if isinstance(spec, RegressionTask):
            assert np.all((value >= 0.0) & (value <= 1.0)), name
    return out


def check_fit_step(model: keras.Model, task: str, jit_compile="auto") -> None:
    """One epoch of two steps on tf.data changes the weights and gives a finite loss.

    `jit_compile="auto"` is what `model.fit` uses by default (XLA on CPU), so it is the default here.
    """
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=task_losses(task), jit_compile=jit_compile)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(make_dataset(task, bands=model_bands(model)), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "fit changed no weight"


def check_save_load(model: keras.Model, tmp_path: Path) -> None:
    """A .keras round trip reproduces the outputs exactly."""
    x = {"spectrogram": random_batch(np.random.default_rng(2), 2, bands=model_bands(model))}
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    expected, got = model(x, training=False), loaded(x, training=False)
    assert set(got) == set(expected), set(got)
    for name in expected:
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(expected[name]), atol=1e-6)


def check_export(model: keras.Model, tmp_path: Path, lengths=(FRAMES,)) -> None:
    """SavedModel export, reloaded: the serving signature takes `spectrogram` of every given length and
    returns the model's named outputs."""
    path = tmp_path / "export"
    model.export(str(path), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    for frames in lengths:
        x = random_batch(np.random.default_rng(frames), 2, frames, model_bands(model))
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
