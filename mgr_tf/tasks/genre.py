"""Genre recognition: one softmax output over the genre classes, cross-entropy, accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mgr_tf.tasks.base import Task


class GenreTask(Task):
    """Single-label genre classification (softmax probabilities, sparse cross-entropy)."""

    name = "genre"
    outputs = ("genre",)
    label_kind = "genre"
    monitor = ("val_accuracy", "max")
    classification = True
    transfer_source = True

    def class_index(self, columns, label_map):
        table = np.append(np.asarray(label_map, np.int64), -1)
        return table[np.asarray(columns["genre"], np.int64)]  # raw -1 (unlabelled) picks the appended -1

    def strata(self, columns, label_map):
        return self.class_index(columns, label_map)

    def targets(self, example, label_map):
        import tensorflow as tf

        raw = tf.cast(example["genre"], tf.int32)
        return {"genre": tf.where(raw >= 0, tf.gather(label_map, tf.maximum(raw, 0)), -1)}

    def target_shapes(self):
        return {"genre": []}

    def heads(self, features, config, *, num_classes=0, class_names=None):
        import keras

        from mgr_tf.models.layers import LabelledDense, kernel_regularizer

        x = keras.layers.Dropout(config.dropout, name="head_dropout")(features)
        return {"genre": LabelledDense(num_classes, labels=list(class_names) if class_names else None,
                                       activation="softmax",
                                       kernel_regularizer=kernel_regularizer(config.l2), name="genre")(x)}

    def losses(self, train) -> dict:
        """Sparse categorical cross-entropy."""
        import keras

        return {"genre": keras.losses.SparseCategoricalCrossentropy()}

    def compile(self, model, train, learning_rate):
        import keras

        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=self.losses(train),
                      metrics={"genre": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]})
        return model

    def serving_outputs(self, outputs, class_names):
        import tensorflow as tf

        probabilities = outputs["genre"]
        names = tf.constant(list(class_names))
        return {"probabilities": probabilities, "genre": tf.gather(names, tf.argmax(probabilities, axis=-1))}

    def evaluate(self, y_true, predictions, *, class_names, run_dir=None, title=""):
        from mgr_tf.training import report as R

        metrics = {"genre": R.genre_metrics(np.asarray(y_true["genre"]), np.asarray(predictions["genre"]),
                                            class_names)}
        if run_dir is not None:
            R.plot_confusion_matrix(metrics["genre"]["confusion_matrix"], class_names,
                                    Path(run_dir) / "confusion_matrix.png", title=title)
        return metrics

    def headline(self, metrics):
        return {"accuracy": metrics["genre"]["accuracy"], "macro F1": metrics["genre"]["macro_f1"]}

    def markdown(self, metrics):
        g = metrics["genre"]
        lines = [f"Accuracy **{g['accuracy']:.3f}**, macro F1 **{g['macro_f1']:.3f}**, weighted F1 "
                 f"{g['weighted_f1']:.3f} on {g['num_examples']} clips.", "",
                 "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        rows = list(g["per_class"].items()) + [(f"*{label}*", g[key]) for label, key in
                                               (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg"))]
        for name, row in rows:
            lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} "
                         f"| {int(row['support'])} |")
        return lines + ["", "![confusion matrix](confusion_matrix.png)", ""]

    def summarise_predictions(self, outputs: Sequence[Mapping], class_names: Sequence[str]) -> dict:
        probs = np.mean([o["probabilities"] for o in outputs], axis=0)
        order = np.argsort(-probs)
        return {"genre": class_names[int(order[0])],
                "probabilities": {class_names[i]: float(probs[i]) for i in order}}
