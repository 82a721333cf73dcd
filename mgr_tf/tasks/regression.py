"""Regression of emotion targets: one sigmoid output per target, MSE + soft-rank Spearman loss, Spearman metrics.

One target (`valence`, `energy`, `danceability`) or several on one backbone (`multitask`, with fixed weights
or learned uncertainty weights as in report 1: Kendall, Gal and Cipolla, CVPR 2018).
"""

from __future__ import annotations

import numpy as np

from mgr_tf.core.lazy import keras, tf
from mgr_tf.core.published import EMOTIONS
from mgr_tf.tasks.base import Task

# Strata of the validation split of regression tasks: quantile bins of one target.
REGRESSION_STRATA = 5


class RegressionTask(Task):
    """Regression of one or more targets in [0, 1].

    Args:
        name: the `--task` value.
        outputs: the targets predicted, each a (batch, 1) sigmoid output.
    """

    label_kind = "emotion"
    monitor = ("val_mean_spearman", "max")

    def __init__(self, name: str, outputs: tuple[str, ...]):
        self.name = name
        self.outputs = tuple(outputs)

    @property
    def stratify_on(self) -> str:
        """The target whose quantile bins stratify the validation split (energy for several)."""
        return self.outputs[0] if len(self.outputs) == 1 else "energy"

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
        if len(self.outputs) < 2:
            return None
        by_target = dict(zip(EMOTIONS, regression.loss_weights))
        return {name: by_target.get(name, 1.0) for name in self.outputs}

    def metrics(self):
        from mgr_tf.metrics import SpearmanMetric  # TensorFlow on demand

        return {name: [SpearmanMetric(name="spearman")] for name in self.outputs}

    def serving_outputs(self, outputs, class_names):
        return {name: tf.reshape(outputs[name], [-1]) for name in self.outputs}
