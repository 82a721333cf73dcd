"""Soft ranks, the soft Spearman loss and multitask loss weighting, all in graph-native TensorFlow.

Spearman's rho is the Pearson correlation of ranks; ranks are piecewise constant, so training uses
soft ranks. Two kinds are provided, both batched over the last axis, both running inside
`tf.function`, under `jit_compile=True` and in `model.fit`:

* "pairwise" (the TF-Ranking style): rank_i = 0.5 + sum_j sigmoid((x_i - x_j) / T). O(n^2).
* "permutahedron": Blondel, Teboul, Berthet and Djolonga, "Fast Differentiable Sorting and Ranking"
  (ICML 2020), l2 regularisation: the Euclidean projection of x / eps onto the permutahedron of
  (n, ..., 1), obtained by sorting and an isotonic regression. The isotonic regression is solved
  here in closed form (the min-max formula over block means, evaluated for all positions at once),
  which is exactly what pool-adjacent-violators returns, but vectorised for the graph and XLA; the
  gradient is written by hand: within each pooled block it averages (Blondel et al., section 5).
  This costs O(n^2 log n) time and O(n^2) memory instead of PAV's O(n log n): cheap for the batch
  sizes a Spearman loss ranks (n <= 512), slower than "pairwise" beyond that.

Ranks are ascending and 1-based: the largest of n values has rank n.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.core.config import SPEARMAN_METHODS as METHODS

PACKAGE = "mgr_tf"


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"soft rank method must be one of {METHODS}, got {method!r}")


def _as_rows(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Flattens the leading axes: (..., n) -> (rows, n), plus the original shape."""
    x = tf.convert_to_tensor(x)
    return tf.reshape(x, [-1, tf.shape(x)[-1]]), tf.shape(x)


def _segment_mean_rows(values: tf.Tensor, segment_ids: tf.Tensor) -> tf.Tensor:
    """Per-row mean of `values` over its segments, broadcast back: (rows, n) -> (rows, n).

    Segment ids are per-row (0..n-1); rows are offset so they never share a segment.
    """
    rows, n = tf.shape(values)[0], tf.shape(values)[1]
    flat_ids = tf.reshape(segment_ids + n * tf.range(rows)[:, None], [-1])
    flat = tf.reshape(values, [-1])
    sums = tf.math.unsorted_segment_sum(flat, flat_ids, rows * n)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(flat), flat_ids, rows * n)
    means = sums / tf.maximum(counts, 1.0)
    return tf.reshape(tf.gather(means, flat_ids), tf.shape(values))


def _suffix_max(m: tf.Tensor) -> tf.Tensor:
    """out[..., i] = max(m[..., i:]) in log2(n) doubling steps (TensorFlow has no cumulative max)."""
    n = tf.shape(m)[-1]
    positions = tf.range(n)

    def step(shift, m):
        # Clamping at the last index is harmless: every suffix contains it. A gather (not a concat
        # with a fill) keeps the shapes static for XLA whatever the shift.
        return shift * 2, tf.maximum(m, tf.gather(m, tf.minimum(positions + shift, n - 1), axis=-1))

    return tf.while_loop(lambda shift, _: shift < n, step, [tf.constant(1), m])[1]


def isotonic_decreasing(y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Isotonic regression onto non-increasing sequences (l2), row by row: what PAV computes.

    Uses the min-max characterisation v_i = min_{j<=i} max_{k>=i} mean(y[j..k]), evaluated for all
    i at once in O(n^2) memory, then snaps each pooled block to its exact mean.

    Args:
        y: (rows, n) float64 values.

    Returns:
        (v, block_ids): the fitted (rows, n) values and, per row, the 0-based index of the pooled
        block each position belongs to.
    """
    n = tf.shape(y)[-1]
    csum = tf.pad(tf.cumsum(y, axis=-1), [[0, 0], [1, 0]])
    idx = tf.range(n)
    j, k = idx[:, None], idx[None, :]
    length = tf.cast(tf.maximum(k - j + 1, 1), y.dtype)
    means = (csum[:, None, 1:] - csum[:, :-1, None]) / length  # means[r, j, k] = mean(y[j..k])
    means = tf.where(k >= j, means, tf.constant(-np.inf, y.dtype))
    best_right = _suffix_max(means)  # [r, j, i] = max_{k>=i} mean(y[j..k])
    best_right = tf.where(j <= k, best_right, tf.constant(np.inf, y.dtype))
    v = tf.reduce_min(best_right, axis=-2)
    # Block boundaries: where the fit drops (it never rises). The tolerance absorbs rounding only.
    tol = 1e-9 * (1.0 + tf.reduce_max(tf.abs(y), axis=-1, keepdims=True))
    drops = tf.cast(v[:, :-1] - v[:, 1:] > tol, tf.int32)
    block_ids = tf.pad(tf.cumsum(drops, axis=-1), [[0, 0], [1, 0]])
    return _segment_mean_rows(y, block_ids), block_ids


@tf.custom_gradient
def _permutahedron_projection(theta: tf.Tensor):
    """Projection of each row of theta onto the permutahedron of (n, ..., 1), with its exact VJP."""
    n = tf.shape(theta)[-1]
    perm = tf.argsort(theta, axis=-1, direction="DESCENDING", stable=True)
    inverse = tf.argsort(perm, axis=-1, stable=True)
    s = tf.gather(theta, perm, batch_dims=1)
    w = tf.cast(tf.range(n, 0, -1), tf.float64)
    s64 = tf.cast(s, tf.float64)
    v, block_ids = isotonic_decreasing(s64 - w)
    out = tf.gather(tf.cast(s64 - v, theta.dtype), inverse, batch_dims=1)

    def grad(upstream):
        g = tf.gather(upstream, perm, batch_dims=1)
        g = g - _segment_mean_rows(g, block_ids)
        return tf.gather(g, inverse, batch_dims=1)

    return out, grad


def soft_rank(x, method: str = "permutahedron", strength: float = 1.0) -> tf.Tensor:
    """Differentiable ascending 1-based ranks over the last axis.

    Args:
        x: (n,) or (..., n) float tensor.
        method: "permutahedron" (Blondel et al. 2020, l2 projection onto the permutahedron; the default,
            as in the Spearman losses) or "pairwise" (sigmoid comparisons, TF-Ranking style).
        strength: the temperature T (pairwise) or the regularisation eps (permutahedron); smaller is
            closer to hard ranks. For inputs in [0, 1] (sigmoid outputs) values around 0.01..0.1 keep
            the ranks informative.

    Returns:
        Soft ranks with the shape and dtype of x. Examples (permutahedron):
        soft_rank([5., 1., 2.], "permutahedron", 1.0) = [3, 1, 2];
        soft_rank([5., 1., 2.], "permutahedron", 2.0) = [3, 1.25, 1.75].
    """
    _check_method(method)
    if not strength > 0:
        raise ValueError(f"soft rank strength must be > 0, got {strength}")
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    rows, shape = _as_rows(x)
    if method == "pairwise":
        diff = (rows[:, :, None] - rows[:, None, :]) / tf.cast(strength, rows.dtype)
        ranks = 0.5 + tf.reduce_sum(tf.sigmoid(diff), axis=-1)
    else:
        ranks = _permutahedron_projection(rows / tf.cast(strength, rows.dtype))
    return tf.reshape(ranks, shape)


def rank_with_ties(x) -> tf.Tensor:
    """Exact ascending 1-based ranks over the last axis; tied values share their average rank.

    Args:
        x: (n,) or (..., n) tensor. +inf values rank last (used to pad fixed-capacity buffers).

    Returns:
        float32 ranks with the shape of x (no gradient).
    """
    rows, shape = _as_rows(tf.stop_gradient(tf.convert_to_tensor(x)))
    perm = tf.argsort(rows, axis=-1, stable=True)
    sorted_rows = tf.gather(rows, perm, batch_dims=1)
    new_value = tf.cast(tf.not_equal(sorted_rows[:, 1:], sorted_rows[:, :-1]), tf.int32)
    groups = tf.pad(tf.cumsum(new_value, axis=-1), [[0, 0], [1, 0]])
    positions = tf.cast(tf.range(1, tf.shape(rows)[-1] + 1), tf.float32) + tf.zeros_like(groups, tf.float32)
    sorted_ranks = _segment_mean_rows(positions, groups)
    ranks = tf.gather(sorted_ranks, tf.argsort(perm, axis=-1, stable=True), batch_dims=1)
    return tf.reshape(ranks, shape)


def pearson_correlation(a, b, axis: int = -1) -> tf.Tensor:
    """Pearson correlation along `axis`; 0 (not NaN) when either side is constant.

    Args:
        a: tensor.
        b: tensor of the same shape.
        axis: the axis to correlate along.
    """
    a = a - tf.reduce_mean(a, axis=axis, keepdims=True)
    b = b - tf.reduce_mean(b, axis=axis, keepdims=True)
    tiny = tf.constant(1e-12, a.dtype)
    # sqrt(x + tiny): a finite gradient when a side is constant.
    return tf.reduce_sum(a * b, axis=axis) / (tf.sqrt(tf.reduce_sum(a * a, axis=axis) + tiny)
                                              * tf.sqrt(tf.reduce_sum(b * b, axis=axis) + tiny))


def spearman_correlation(y_true, y_pred, method: str = "permutahedron", strength: float = 0.1) -> tf.Tensor:
    """Soft Spearman correlation over the batch: exact (tie-averaged) ranks of y_true, soft ranks of y_pred.

    Args:
        y_true: (batch,) or (batch, 1) targets.
        y_pred: predictions of the same size.
        method: soft rank method for y_pred (see `soft_rank`).
        strength: soft rank temperature / regularisation.

    Returns:
        A scalar in [-1, 1], differentiable in y_pred.
    """
    y_pred = tf.reshape(tf.convert_to_tensor(y_pred), [-1])
    y_true = tf.cast(tf.reshape(tf.convert_to_tensor(y_true), [-1]), y_pred.dtype)
    true_ranks = tf.cast(rank_with_ties(y_true), y_pred.dtype)
    return pearson_correlation(true_ranks, soft_rank(y_pred, method, strength))


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpearmanLoss(keras.losses.Loss):
    """1 - soft Spearman correlation over the batch; lies in [0, 2], so it is bounded below.

    Args:
        method: soft rank method ("pairwise" or "permutahedron").
        strength: soft rank temperature / regularisation (predictions are sigmoid outputs in [0, 1]).
        name: loss name.
        **kwargs: `keras.losses.Loss` arguments (reduction, dtype).
    """

    def __init__(self, method: str = "permutahedron", strength: float = 0.1, name: str = "spearman_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        _check_method(method)
        self.method, self.strength = method, float(strength)

    def call(self, y_true, y_pred):
        return 1.0 - spearman_correlation(y_true, y_pred, self.method, self.strength)

    def get_config(self):
        return {**super().get_config(), "method": self.method, "strength": self.strength}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MSESpearmanLoss(keras.losses.Loss):
    """Mean squared error + spearman_weight * (1 - soft Spearman): the combination of reports 1 and 2.

    MSE alone lets a regressor collapse to the mean target; the rank term keeps the ordering.

    Args:
        spearman_weight: lambda, the weight of the Spearman term (0 = plain MSE).
        method: soft rank method.
        strength: soft rank temperature / regularisation.
        name: loss name.
        **kwargs: `keras.losses.Loss` arguments.
    """

    def __init__(self, spearman_weight: float = 1.0, method: str = "permutahedron", strength: float = 0.1,
                 name: str = "mse_spearman_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_method(method)
        self.spearman_weight, self.method, self.strength = float(spearman_weight), method, float(strength)

    def call(self, y_true, y_pred):
        y_pred = tf.reshape(y_pred, [-1])
        y_true = tf.cast(tf.reshape(y_true, [-1]), y_pred.dtype)
        mse = tf.reduce_mean(tf.square(y_true - y_pred))
        if not self.spearman_weight:
            return mse
        return mse + self.spearman_weight * (1.0 - spearman_correlation(y_true, y_pred, self.method, self.strength))

    def get_config(self):
        return {**super().get_config(), "spearman_weight": self.spearman_weight, "method": self.method,
                "strength": self.strength}


@keras.saving.register_keras_serializable(package=PACKAGE)
class UncertaintyWeightedModel(keras.Model):
    """Wraps a multi-output model and weights its task losses with learned uncertainties.

    total = sum_t exp(-s_t) * L_t + s_t with one trainable s_t per task, initialised at 0 (Kendall,
    Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses", CVPR 2018, in the form of
    report 1). Each L_t must be bounded below (MSE and 1 - rho are >= 0); for fixed L_t the total is
    then >= sum_t (1 + log L_t), and s_t settles at log L_t instead of running away.

    Use it like the wrapped model: `compile(optimizer, metrics=...)` without `loss`, then `fit`.
    Predictions, `.keras` save/load and `export` all go through the wrapped model, whose outputs are
    unchanged; `self.model` is the plain model to export for serving.

    Args:
        model: the model with dict outputs (e.g. `build_model(config, "multitask", ...)`).
        losses: {output name: loss}, a loss per weighted output (e.g. a task's `losses`).
        **kwargs: `keras.Model` arguments (name).
    """

    def __init__(self, model: keras.Model, losses: dict, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.task_names = tuple(losses)
        self.task_losses = {name: keras.losses.get(loss) for name, loss in losses.items()}
        self.log_vars = self.add_weight(name="log_variances", shape=(len(self.task_names),), initializer="zeros")
        self.loss_trackers = [keras.metrics.Mean(name=f"{name}_loss") for name in self.task_names]
        self.built = model.built  # its only weights are made above; BackupAndRestore needs a built model

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        task_losses = {}
        for i, name in enumerate(self.task_names):
            task_losses[name] = tf.cast(self.task_losses[name](y[name], y_pred[name]), tf.float32)
            self.loss_trackers[i].update_state(task_losses[name])
        total = self.weighted_total(task_losses)
        if self.losses:
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])
        return total

    def weighted_total(self, task_losses: dict):
        """sum_t exp(-s_t) * L_t + s_t of the task losses {output name: L_t} (float32 scalars)."""
        total = tf.constant(0.0)
        for i, name in enumerate(self.task_names):
            total += tf.exp(-self.log_vars[i]) * task_losses[name] + self.log_vars[i]
        return total

    def task_weights(self) -> dict[str, float]:
        """The current weights exp(-s_t), by output name."""
        weights = np.exp(-keras.ops.convert_to_numpy(self.log_vars))
        return {name: float(w) for name, w in zip(self.task_names, weights)}

    def get_config(self):
        return {**super().get_config(),
                "model": keras.saving.serialize_keras_object(self.model),
                "losses": {name: keras.saving.serialize_keras_object(loss) for name, loss in self.task_losses.items()}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        losses = {name: keras.saving.deserialize_keras_object(loss) for name, loss in config.pop("losses").items()}
        return cls(model, losses, **config)


def build_learned_weighting_model(model: keras.Model, losses: dict) -> UncertaintyWeightedModel:
    """`UncertaintyWeightedModel(model, losses)`: learned multitask weights for `model.fit`.

    Args:
        model: a multi-output model with dict outputs.
        losses: {output name: loss}.
    """
    return UncertaintyWeightedModel(model, losses, name=f"{model.name}_learned_weights")


class LogTaskWeights(keras.callbacks.Callback):
    """Adds `weight_<task>` (the current exp(-s_t)) to the logs after every epoch.

    Works with `UncertaintyWeightedModel`; for other models it logs the fixed `weights` given.

    Args:
        weights: fixed weights to log when the model has no learned ones.
    """

    def __init__(self, weights: dict[str, float] | None = None):
        super().__init__()
        self.fixed = dict(weights or {})
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        weights = self.model.task_weights() if hasattr(self.model, "task_weights") else dict(self.fixed)
        self.history.append(weights)
        if logs is not None:
            logs.update({f"weight_{name}": value for name, value in weights.items()})
