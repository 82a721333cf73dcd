"""Heads on frozen features: a pretrained part's output computed once per clip, then only the heads trained.

For a backbone with a frozen pretrained part (the musicnn encoder, `Encoder.frozen_output`): the model is split
at that layer into the frozen part (input -> features) and the trainable rest (features -> heads). The frozen
part runs once over the clips in inference mode, and its features are kept on disk (`features_of`), keyed by
the frozen part's weights and layers and by the data's records, so another run, fold, task or tuning trial on the
same clips reads them back instead of running the encoder again. A `Normalization` layer named
`embedding_norm` in the rest, if any, is adapted on the training features (a standardised linear probe); the
rest is then fitted on the cached features. The rest shares its layers with the model, so the model holds the
fitted heads afterwards and is evaluated, saved and exported whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.core.paths import cache_home
from mgr_tf.data import make_dataset, split_ids
from mgr_tf.data.prepare import prepare
from mgr_tf.data.spec import DataSpec, resolve
from mgr_tf.training import convex

EMBEDDING_NORM = "embedding_norm"
# Clips per call of the frozen part: a 30 s clip is ten musicnn patches whose front-end activations take
# about 25 MB each, so a batch of 32 clips would need some 8 GB at once.
CHUNK = 4


def split_at(model, layer_name: str):
    """(frozen part: model input -> the layer's output, rest: that output -> the model's outputs)."""
    features = model.get_layer(layer_name).output
    return keras.Model(model.input, features, name=f"{model.name}_frozen"), keras.Model(features, model.output,
                                                                                         name=f"{model.name}_rest")


@dataclass
class Features:
    """The frozen part's features of one split and the split's targets, in the pipeline's order.

    Args:
        x: (clips, features) float32.
        y: {output: (clips, ...) targets}.
        ids: the clips' track ids.
    """

    x: np.ndarray
    y: dict
    ids: list[str]

    def __add__(self, other: Features) -> Features:
        return Features(np.concatenate([self.x, other.x]), {k: np.concatenate([v, other.y[k]]) for k, v in self.y.items()},
                        self.ids + other.ids)


def frozen_key(frozen: keras.Model, spec: DataSpec) -> str:
    """The cache key of a frozen part's features on a data config's records: its weights, its layers and the data."""
    digest = hashlib.sha256()
    for weight in frozen.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    layers = [{k: v for k, v in layer.get_config().items() if k != "name"} for layer in frozen.layers]
    prepared = prepare(spec)
    digest.update(json.dumps({"layers": layers, "records": prepared.fingerprint, "features": spec.config.features,
                              "frames": spec.frames}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def features_of(frozen: keras.Model, spec: DataSpec, split: str, *, chunk: int = CHUNK) -> Features:
    """The frozen part's features of every clip of a split (whole clips, the pipeline's order), from the cache.

    Clips not in the cache are computed `chunk` at a time and added to it.
    """
    spec = resolve(dataclasses.replace(spec.config, mixup=0.0))  # whole clips, each once (no mixup pairs)
    path = cache_home() / "frozen_features" / f"{frozen_key(frozen, spec)}.npz"
    cached = dict(np.load(path, allow_pickle=False)) if path.is_file() else {}
    known = dict(zip(cached.get("ids", np.array([], str)).tolist(), range(len(cached.get("ids", [])))))
    ids = split_ids(spec, split)
    missing = [t for t in ids if t not in known]
    ds = make_dataset(spec, split, shuffle=False, with_ids=True)
    computed: dict[str, np.ndarray] = {}
    targets: dict[str, list] = {}
    started = time.time()
    for inputs, batch_targets, *_ in ds:
        batch_ids = [t.decode() for t in inputs["track_id"].numpy()]
        todo = [i for i, t in enumerate(batch_ids) if t in missing]
        for start in range(0, len(todo), chunk):
            rows = todo[start:start + chunk]
            part = {k: tf.gather(v, rows) for k, v in inputs.items() if k != "track_id"}
            for i, vector in zip(rows, np.asarray(frozen(part, training=False))):
                computed[batch_ids[i]] = vector
        for key, value in batch_targets.items():
            targets.setdefault(key, []).append(value.numpy())
    if missing:
        print(f"[train] frozen features of {len(missing)} {split} clips: {time.time() - started:.0f} s "
              f"({len(ids) - len(missing)} from the cache)", file=sys.stderr, flush=True)
        old = [cached["x"][known[t]] for t in known] if known else []
        all_ids = list(known) + list(computed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{time.time_ns()}.npz")
        np.savez(tmp, ids=np.array(all_ids), x=np.stack(old + [computed[t] for t in computed]).astype(np.float32))
        tmp.replace(path)
    x = np.stack([computed[t] if t in computed else cached["x"][known[t]] for t in ids]).astype(np.float32)
    return Features(x, {k: np.concatenate(v) for k, v in targets.items()}, list(ids))


def adapt_norm(rest: keras.Model, x: np.ndarray) -> None:
    """Adapts the rest's `embedding_norm` (if any) on the training features."""
    norm = next((layer for layer in rest.layers if layer.name == EMBEDDING_NORM), None)
    if norm is not None:
        norm.adapt(x)


def feature_datasets(train: Features, val: Features, *, batch_size: int, seed: int):
    """(train, validation) tf.data datasets of cached features (the train one shuffled, seeded)."""
    train_ds = (tf.data.Dataset.from_tensor_slices((train.x, train.y))
                .shuffle(len(train.x), seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    val_ds = tf.data.Dataset.from_tensor_slices((val.x, val.y)).batch(batch_size)
    return train_ds.prefetch(tf.data.AUTOTUNE), val_ds


HEAD_INPUT = "head_dropout"  # every task's heads read the features through this layer (`mgr_tf.tasks`)


def fit_convex_heads(model: keras.Model, frozen_layer: str, task, features: Features, regression, c: float) -> dict:
    """Solves the model's heads in closed form on the fixed features of `frozen_layer`; returns what was fitted.

    What follows `frozen_layer` (the rest, `split_at`) is called the rest below; its normalisation is adapted.

    The rest must hold no trained weights but the heads' (e.g. `embedding_norm`, adapted, -> `head_dropout` -> one
    dense head per output: softmax for a classification task, one sigmoid unit per regression target): the convex problems of
    `mgr_tf.training.convex`. A target's loss weight multiplies its C.

    Raises:
        ValueError: the heads are not that (a family whose rest trains layers of its own).
    """
    _, rest = split_at(model, frozen_layer)
    inner = {layer.name for layer in rest.layers if layer.trainable_weights} - set(task.outputs)
    if inner:
        raise ValueError(f"convex heads fit a linear model on fixed features; this model has trainable layers between "
                         f"them and the heads ({', '.join(sorted(inner))}): use --head gradient")
    head_input = keras.Model(model.get_layer(frozen_layer).output, model.get_layer(HEAD_INPUT).input)
    x = np.asarray(head_input(features.x, training=False), np.float64)
    weights = task.loss_weights(regression) or {}
    fitted = {}
    for name in task.outputs:
        layer = model.get_layer(name)
        if task.classification:
            fit = convex.fit_softmax(x, features.y[name].reshape(-1), layer.units, c)
        else:
            fit = convex.fit_sigmoid(x, features.y[name].reshape(-1), c * weights.get(name, 1.0))
        layer.kernel.assign(fit.kernel.astype(np.float32))
        layer.bias.assign(fit.bias.astype(np.float32))
        fitted[name] = {"iterations": fit.iterations, "converged": fit.converged,
                        "c": c * weights.get(name, 1.0)}
    return fitted
