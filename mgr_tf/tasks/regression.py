"""Regression of targets in [0, 1]: one sigmoid output per target, MSE + soft-rank Spearman loss, Spearman metrics.

The targets are the data's: the columns of its label CSV (valence, energy and danceability in the published
data; any names otherwise). One target (`--task valence`, or any target's name), several or all of them on one
backbone (`--task regression` / `multitask`, with fixed weights, or learned uncertainty weights as in report 1:
Kendall, Gal and Cipolla, CVPR 2018).
"""

from __future__ import annotations

import copy

import numpy as np

from mgr_tf.core.lazy import keras, tf
from mgr_tf.tasks.base import Task

# Strata of the validation split and the folds of regression tasks: quantile bins of one target.
REGRESSION_STRATA = 5


class RegressionTask(Task):
    """Regression of one or more targets in [0, 1].

    Args:
        name: the `--task` value.
        outputs: the targets predicted, each a (batch, 1) sigmoid output; None = the data's targets (all of
            them, or those `--targets` names), filled in by `bind` when the data is known.
    """

    label_kind = "emotion"
    monitor = ("val_mean_spearman", "max")

    def __init__(self, name: str, outputs: tuple[str, ...] | None = None):
        self.name = name
        self._outputs = None if outputs is None else tuple(outputs)

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs or ()

    @property
    def from_data(self) -> bool:
        """True when the targets are the data's, not fixed by the task."""
        return self._outputs is None

    def bind(self, targets: tuple[str, ...]) -> RegressionTask:
        """This task predicting `targets` (a copy; the registered task is left as it is)."""
        bound = copy.copy(self)
        bound._outputs = tuple(targets)
        return bound

    @property
    def columns(self) -> tuple[str, ...]:
        """The label columns of the data that the targets are decoded from (the outputs themselves by default)."""
        return self.outputs

    @property
    def stratify_on(self) -> str:
        """The column whose quantile bins stratify the validation split and the folds: the first target."""
        return self.columns[0]

    def strata(self, columns, label_map):
        values = np.asarray(columns[self.stratify_on], np.float64)
        edges = np.quantile(values, np.linspace(0, 1, REGRESSION_STRATA + 1)[1:-1])
        return np.searchsorted(edges, values, side="right")

    def targets(self, example, label_map):
        return {name: tf.reshape(tf.cast(example[name], tf.float32), [1]) for name in self.outputs}

    def target_shapes(self):
        return {name: [1] for name in self.outputs}

    def heads(self, features, config, *, num_classes=0, class_names=None):
        from mgr_tf.models.layers import kernel_regularizer  # TensorFlow on demand

        x = keras.layers.Dropout(config.dropout, name="head_dropout")(features)
        return {name: keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=kernel_regularizer(config.l2),
                                         name=name)(x) for name in self.outputs}

    def losses(self, regression) -> dict:
        """MSE + lambda * (1 - soft Spearman) per output."""
        from mgr_tf.losses import MSESpearmanLoss  # TensorFlow on demand

        return {name: MSESpearmanLoss(regression.spearman_weight, regression.spearman_method,
                                      regression.spearman_strength) for name in self.outputs}

    def loss_weights(self, regression):
        """The weights of `regression.loss_weights` by target name (1 for a target it does not name)."""
        if len(self.outputs) < 2:
            return None
        return {name: float(regression.loss_weights.get(name, 1.0)) for name in self.outputs}

    def metrics(self):
        from mgr_tf.metrics import SpearmanMetric  # TensorFlow on demand

        return {name: [SpearmanMetric(name="spearman")] for name in self.outputs}

    def serving_outputs(self, outputs, class_names):
        return {name: tf.reshape(outputs[name], [-1]) for name in self.outputs}
