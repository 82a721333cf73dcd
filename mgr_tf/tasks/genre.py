"""Genre recognition: one softmax output over the genre classes, cross-entropy, accuracy."""

from __future__ import annotations

import numpy as np

from mgr_tf.core.lazy import keras, tf
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
        raw = tf.cast(example["genre"], tf.int32)
        return {"genre": tf.where(raw >= 0, tf.gather(label_map, tf.maximum(raw, 0)), -1)}

    def target_shapes(self):
        return {"genre": []}

    def heads(self, features, config, *, num_classes=0, class_names=None):
        from mgr_tf.models.layers import LabelledDense, kernel_regularizer  # TensorFlow on demand

        x = keras.layers.Dropout(config.dropout, name="head_dropout")(features)
        return {"genre": LabelledDense(num_classes, labels=list(class_names) if class_names else None,
                                       activation="softmax",
                                       kernel_regularizer=kernel_regularizer(config.l2), name="genre")(x)}

    def losses(self, regression=None) -> dict:
        """Sparse categorical cross-entropy."""
        return {"genre": keras.losses.SparseCategoricalCrossentropy()}

    def metrics(self):
        return {"genre": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]}

    def serving_outputs(self, outputs, class_names):
        probabilities = outputs["genre"]
        names = tf.constant(list(class_names))
        return {"probabilities": probabilities, "genre": tf.gather(names, tf.argmax(probabilities, axis=-1))}
