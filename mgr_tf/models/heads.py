"""Output heads, added in one place for every backbone: genre softmax and sigmoid emotion regressors."""

from __future__ import annotations

import keras

from mgr_tf.config import task_outputs
from mgr_tf.genres import EMOTIONS
from mgr_tf.models.config import ModelConfig
from mgr_tf.models.layers import LabelledDense, kernel_regularizer

HEAD_PREFIX = "head_"
OUTPUT_NAMES = ("genre",) + EMOTIONS


def add_heads(features, task: str, config: ModelConfig, *, num_classes: int = 10, class_names=None) -> dict:
    """Dropout then one dense output per task output, on the backbone's (batch, features) tensor.

    Args:
        features: the backbone output.
        task: genre, valence, energy, danceability or multitask (the three emotions on one backbone).
        config: the model config (dropout, l2).
        num_classes: genre classes.
        class_names: genre names stored in the genre output layer, or None.

    Returns:
        {output name: tensor}: genre (batch, num_classes) softmax probabilities; each emotion
        (batch, 1) sigmoid in [0, 1].
    """
    names = task_outputs(task)
    x = keras.layers.Dropout(config.dropout, name=f"{HEAD_PREFIX}dropout")(features)
    reg = kernel_regularizer(config.l2)
    outputs = {}
    for name in names:
        if name == "genre":
            layer = LabelledDense(num_classes, labels=class_names, activation="softmax", kernel_regularizer=reg,
                                  name="genre")
        else:
            layer = keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=reg, name=name)
        outputs[name] = layer(x)
    return outputs
