"""Heads on frozen features: a pretrained part's output computed once per clip, then only the heads trained.

For a backbone with `frozen_output` (the musicnn encoder): the model is split at that layer into the frozen
part (input -> features) and the trainable rest (features -> heads). The frozen part runs once over the
training and validation clips in inference mode; a `Normalization` layer named `embedding_norm` in the
rest, if any, is adapted on the training features (a standardised linear probe); the rest is then fitted
on the cached features with the run's usual callbacks. The rest shares its layers with the model, so the
model holds the fitted heads afterwards and is evaluated, saved and exported whole.
"""

from __future__ import annotations

import sys
import time

import keras
import numpy as np
import tensorflow as tf


def split_at(model, layer_name: str):
    """(frozen part: model input -> the layer's output, rest: that output -> the model's outputs)."""
    features = model.get_layer(layer_name).output
    return keras.Model(model.input, features, name=f"{model.name}_frozen"), keras.Model(features, model.output,
                                                                                         name=f"{model.name}_rest")


# Clips per call of the frozen part: a 30 s clip is ten musicnn patches whose front-end activations take
# about 25 MB each, so a batch of 32 clips would need some 8 GB at once.
CHUNK = 4


def frozen_features(frozen, ds, label: str, chunk: int = CHUNK) -> tuple[np.ndarray, dict]:
    """(features (N, D), {output: targets (N, ...)}) of every example of a batched `(inputs, targets)` dataset,
    computed `chunk` examples at a time."""
    features, targets = [], {}
    started, seen = time.time(), 0
    for inputs, batch_targets, *_ in ds:
        n = len(next(iter(batch_targets.values())))
        for i in range(0, n, chunk):
            part = {k: v[i:i + chunk] for k, v in inputs.items() if k != "track_id"}
            features.append(np.asarray(frozen(part, training=False)))
        for key, value in batch_targets.items():
            targets.setdefault(key, []).append(value.numpy())
        seen += n
    print(f"[train] frozen features of {seen} {label} clips: {time.time() - started:.0f} s", file=sys.stderr,
          flush=True)
    return np.concatenate(features), {k: np.concatenate(v) for k, v in targets.items()}


def feature_datasets(frozen, rest, train_ds, val_ds, *, batch_size: int, seed: int):
    """(train, validation) datasets of cached features for `rest`; adapts its `embedding_norm` on train."""
    x_train, y_train = frozen_features(frozen, train_ds, "training")
    x_val, y_val = frozen_features(frozen, val_ds, "validation")
    norm = next((layer for layer in rest.layers if layer.name == "embedding_norm"), None)
    if norm is not None:
        norm.adapt(x_train)
    train = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
             .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(batch_size)
    return train.prefetch(tf.data.AUTOTUNE), val
