"""Emotion regression: one sigmoid output per emotion, MSE + soft-rank Spearman loss, Spearman metrics.

One emotion (`valence`, `energy`, `danceability`) or all three on one backbone (`multitask`, with fixed
or learned uncertainty weights as in report 1: Kendall, Gal and Cipolla, CVPR 2018).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mgr_tf.tasks.base import Task

# Strata of the validation split of emotion tasks: quantile bins of one target.
EMOTION_STRATA = 5


class EmotionTask(Task):
    """Regression of one or more emotion targets in [0, 1].

    Args:
        name: the `--task` value.
        outputs: the emotions predicted, each a (batch, 1) sigmoid output.
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
        edges = np.quantile(values, np.linspace(0, 1, EMOTION_STRATA + 1)[1:-1])
        return np.searchsorted(edges, values, side="right")

    def targets(self, example, label_map):
        import tensorflow as tf

        return {name: tf.reshape(tf.cast(example[name], tf.float32), [1]) for name in self.outputs}

    def target_shapes(self):
        return {name: [1] for name in self.outputs}

    def heads(self, features, config, *, num_classes=0, class_names=None):
        import keras

        from mgr_tf.models.layers import kernel_regularizer

        x = keras.layers.Dropout(config.dropout, name="head_dropout")(features)
        return {name: keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=kernel_regularizer(config.l2),
                                         name=name)(x) for name in self.outputs}

    def check_train_config(self, train):
        if train.learned_weights and len(self.outputs) < 2:
            return f"--learned-weights needs --task multitask (several outputs to weigh); --task {self.name} has one"
        return None

    def losses(self, train) -> dict:
        """MSE + lambda * (1 - soft Spearman) per output."""
        from mgr_tf.losses import MSESpearmanLoss

        return {name: MSESpearmanLoss(train.spearman_weight, train.spearman_method, train.spearman_strength)
                for name in self.outputs}

    def compile(self, model, train, learning_rate):
        import keras

        from mgr_tf import losses as L
        from mgr_tf.genres import EMOTIONS
        from mgr_tf.metrics import SpearmanMetric

        optimizer = keras.optimizers.Adam(learning_rate)
        losses = self.losses(train)
        metrics = {name: [SpearmanMetric(name="spearman")] for name in self.outputs}
        if train.learned_weights:
            weighted = L.build_learned_weighting_model(model, losses)
            weighted.compile(optimizer=optimizer, metrics=metrics)
            return weighted
        weights = None
        if len(self.outputs) > 1:
            by_emotion = dict(zip(EMOTIONS, train.loss_weights))
            weights = {name: by_emotion.get(name, 1.0) for name in self.outputs}
        model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, metrics=metrics)
        return model

    def callbacks(self, fit_model):
        from mgr_tf import losses as L
        from mgr_tf.metrics import MeanSpearman

        extra = [MeanSpearman(self.outputs)]
        if hasattr(fit_model, "task_weights"):
            extra.append(L.LogTaskWeights())
        return extra

    def serving_outputs(self, outputs, class_names):
        import tensorflow as tf

        return {name: tf.reshape(outputs[name], [-1]) for name in self.outputs}

    def evaluate(self, y_true, predictions, *, class_names=(), run_dir=None, title=""):
        from mgr_tf.training import report as R

        metrics = {}
        for name in self.outputs:
            t, p = np.reshape(y_true[name], -1), np.reshape(predictions[name], -1)
            metrics[name] = R.emotion_metrics(t, p)
            if run_dir is not None:
                R.plot_scatter(t, p, name, metrics[name], Path(run_dir) / f"scatter_{name}.png")
        return metrics

    def headline(self, metrics):
        values = {f"{name} Spearman": metrics[name]["spearman"] for name in self.outputs}
        if len(self.outputs) > 1:
            values["mean Spearman"] = float(np.mean([metrics[n]["spearman"] for n in self.outputs]))
        return values

    def markdown(self, metrics):
        lines = ["| target | Spearman | Pearson | MSE | n |", "|---|---|---|---|---|"]
        for name in self.outputs:
            m = metrics[name]
            lines.append(f"| {name} | {m['spearman']:.3f} | {m['pearson']:.3f} | {m['mse']:.4f} | {m['num_examples']} |")
        if len(self.outputs) > 1:
            lines.append(f"\nMean Spearman: **{np.mean([metrics[n]['spearman'] for n in self.outputs]):.3f}**")
        return lines + [""] + [f"![{n}](scatter_{n}.png)" for n in self.outputs] + [""]

    def summarise_predictions(self, outputs, class_names=()):
        return {name: float(np.mean([o[name] for o in outputs])) for name in self.outputs}
