"""SpearmanMetric equals scipy's Spearman on streamed batches; mean Spearman for multitask logs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from mgr_tf.core.published import EMOTIONS
from mgr_tf.metrics import MeanSpearman, SpearmanMetric, mean_spearman


def test_equals_scipy_with_ties_across_batches():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 83).astype(np.float32)
    y_pred = (y_true + rng.integers(0, 4, 83)).astype(np.float32)
    metric = SpearmanMetric(capacity=128)
    for start in range(0, 83, 16):
        metric.update_state(y_true[start:start + 16, None], y_pred[start:start + 16, None])
    assert float(metric.result()) == pytest.approx(scipy.stats.spearmanr(y_true, y_pred).statistic, abs=1e-6)
    metric.reset_state()
    metric.update_state(y_true[:10], -y_true[:10])
    assert float(metric.result()) == pytest.approx(-1.0, abs=1e-6)


def test_overflow_gives_nan_and_config_round_trip():
    metric = SpearmanMetric(capacity=8)
    metric.update_state(np.arange(9.0), np.arange(9.0))
    assert np.isnan(float(metric.result()))
    clone = SpearmanMetric.from_config(metric.get_config())
    assert clone.capacity == 8 and clone.name == "spearman"


def test_streams_inside_tf_function():
    rng = np.random.default_rng(2)
    y_true = np.round(rng.random(50), 1).astype(np.float32)
    y_pred = (y_true + rng.normal(0, 0.3, 50)).astype(np.float32)
    metric = SpearmanMetric(capacity=64)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)] * 2)
    def update(a, b):
        metric.update_state(a, b)

    for start in range(0, 50, 16):
        update(y_true[start:start + 16, None], y_pred[start:start + 16, None])
    assert float(metric.result()) == pytest.approx(scipy.stats.spearmanr(y_true, y_pred).statistic, abs=1e-6)


def test_mean_spearman_callback_averages_the_logged_outputs():
    logs = {"valence_spearman": 0.1, "energy_spearman": 0.4, "danceability_spearman": 0.7,
            "val_valence_spearman": 0.2, "val_energy_spearman": -0.2, "val_danceability_spearman": 0.6, "loss": 1.0}
    MeanSpearman().on_epoch_end(0, logs)
    assert logs["mean_spearman"] == pytest.approx(0.4) and logs["val_mean_spearman"] == pytest.approx(0.2)
    one = {"val_energy_spearman": 0.3, "val_valence_spearman": 0.9}
    MeanSpearman(("energy",)).on_epoch_end(0, one)
    assert one["val_mean_spearman"] == pytest.approx(0.3)


@pytest.mark.slow
def test_in_compile_logs_val_spearman_equal_to_scipy():
    rng = np.random.default_rng(1)
    x = rng.random((40, 4)).astype(np.float32)
    y = {name: np.round(rng.random((40, 1)), 1).astype(np.float32) for name in EMOTIONS}
    inputs = keras.Input((4,), name="spectrogram")
    outputs = {name: keras.layers.Dense(1, activation="sigmoid", name=name)(inputs) for name in EMOTIONS}
    model = keras.Model({"spectrogram": inputs}, outputs)
    model.compile(optimizer="sgd", loss={name: "mse" for name in EMOTIONS},
                  metrics={name: [SpearmanMetric(name="spearman")] for name in EMOTIONS})
    train = tf.data.Dataset.from_tensor_slices(({"spectrogram": x}, y)).batch(16)
    val = tf.data.Dataset.from_tensor_slices(({"spectrogram": x[:25]}, {k: v[:25] for k, v in y.items()})).batch(7)
    history = model.fit(train, validation_data=val, epochs=1, verbose=0, callbacks=[MeanSpearman()], shuffle=False)
    logs = {k: v[-1] for k, v in history.history.items()}
    pred = model.predict({"spectrogram": x[:25]}, verbose=0)
    rhos = [scipy.stats.spearmanr(y[n][:25, 0], pred[n][:, 0]).statistic for n in EMOTIONS]
    for name, rho in zip(EMOTIONS, rhos):
        assert logs[f"val_{name}_spearman"] == pytest.approx(rho, abs=1e-5)
    assert logs["val_mean_spearman"] == pytest.approx(np.mean(rhos), abs=1e-5)
    assert mean_spearman(logs) == pytest.approx(np.mean(rhos), abs=1e-5)
    assert mean_spearman({"val_spearman": 0.25}) == 0.25 and mean_spearman({}) is None
