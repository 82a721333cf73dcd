"""Exact streaming Spearman correlation for `compile(metrics=...)`, and the multitask mean of it."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from mgr_tf.core.published import EMOTIONS
from mgr_tf.losses import rank_with_ties

PACKAGE = "mgr_tf"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpearmanMetric(keras.metrics.Metric):
    """Spearman's rho over everything seen since the last reset (a whole epoch), with tie-averaged ranks.

    Targets and predictions are kept in fixed-capacity buffers (fixed shapes keep the metric usable
    under XLA, which `model.fit` uses by default), so the value equals `scipy.stats.spearmanr` on the
    concatenated data. Past `capacity` examples the result is NaN (raise the capacity then).

    Use per output: `metrics={"valence": [SpearmanMetric(name="spearman")]}` logs `valence_spearman`
    and `val_valence_spearman`.

    Args:
        name: metric name.
        capacity: most examples held per epoch.
        dtype: metric dtype.
    """

    def __init__(self, name: str = "spearman", capacity: int = 16384, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.capacity = int(capacity)
        # One spare slot at the end absorbs writes past the capacity.
        self.true_values = self.add_variable(shape=(self.capacity + 1,), initializer="zeros", name="true_values")
        self.pred_values = self.add_variable(shape=(self.capacity + 1,), initializer="zeros", name="pred_values")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int64", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Appends a batch.

        Args:
            y_true: (batch,) or (batch, 1) targets.
            y_pred: predictions of the same size.
            sample_weight: not supported (must be None): ranks of weighted samples are ill-defined.
        """
        if sample_weight is not None:
            raise ValueError("SpearmanMetric does not support sample weights")
        y_true = tf.cast(tf.reshape(y_true, [-1]), tf.float32)
        y_pred = tf.cast(tf.reshape(y_pred, [-1]), tf.float32)
        n = tf.shape(y_pred, out_type=tf.int64)[0]
        count = tf.convert_to_tensor(self.count)
        slots = tf.minimum(count + tf.range(n, dtype=tf.int64), self.capacity)[:, None]
        self.true_values.assign(tf.tensor_scatter_nd_update(tf.convert_to_tensor(self.true_values), slots, y_true))
        self.pred_values.assign(tf.tensor_scatter_nd_update(tf.convert_to_tensor(self.pred_values), slots, y_pred))
        self.count.assign(count + n)

    def result(self):
        count = tf.convert_to_tensor(self.count)
        valid = tf.range(self.capacity, dtype=tf.int64) < count
        inf = tf.constant(math.inf, tf.float32)
        # Empty slots hold +inf so they rank after every real value and leave its rank unchanged.
        true_ranks = rank_with_ties(tf.where(valid, tf.convert_to_tensor(self.true_values)[:-1], inf))
        pred_ranks = rank_with_ties(tf.where(valid, tf.convert_to_tensor(self.pred_values)[:-1], inf))
        weight = tf.cast(valid, tf.float32)
        total = tf.maximum(tf.reduce_sum(weight), 1.0)
        a = (true_ranks - tf.reduce_sum(true_ranks * weight) / total) * weight
        b = (pred_ranks - tf.reduce_sum(pred_ranks * weight) / total) * weight
        rho = tf.math.divide_no_nan(tf.reduce_sum(a * b), tf.sqrt(tf.reduce_sum(a * a) * tf.reduce_sum(b * b)))
        return tf.where(count > self.capacity, tf.constant(math.nan, tf.float32), rho)

    def reset_state(self):
        self.true_values.assign(tf.zeros_like(tf.convert_to_tensor(self.true_values)))
        self.pred_values.assign(tf.zeros_like(tf.convert_to_tensor(self.pred_values)))
        self.count.assign(tf.constant(0, tf.int64))

    def get_config(self):
        return {**super().get_config(), "capacity": self.capacity}


def mean_spearman(logs: dict, names=EMOTIONS, prefix: str = "val_", metric: str = "spearman") -> float | None:
    """Mean of `<prefix><name>_<metric>` over the outputs present in `logs` (None if none is).

    For a single-output model whose metric is logged without the output name, `<prefix><metric>`
    is used.

    Args:
        logs: Keras logs (or a History's last epoch).
        names: output names to average over.
        prefix: "val_" for validation, "" for training.
        metric: the metric's name.
    """
    values = [float(logs[f"{prefix}{name}_{metric}"]) for name in names if f"{prefix}{name}_{metric}" in logs]
    if not values and f"{prefix}{metric}" in logs:
        values = [float(logs[f"{prefix}{metric}"])]
    return sum(values) / len(values) if values else None


class MeanSpearman(keras.callbacks.Callback):
    """Adds `val_mean_spearman` (and `mean_spearman`) to the logs at the end of every epoch.

    Place it before callbacks that read it (keras-tuner's objective, EarlyStopping, ModelCheckpoint):
    callbacks see the logs in list order.

    Args:
        names: output names to average over.
        metric: the per-output metric name.
    """

    def __init__(self, names=EMOTIONS, metric: str = "spearman"):
        super().__init__()
        self.names, self.metric = tuple(names), metric

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for prefix in ("", "val_"):
            value = mean_spearman(logs, self.names, prefix, self.metric)
            if value is not None:
                logs[f"{prefix}mean_spearman"] = value
