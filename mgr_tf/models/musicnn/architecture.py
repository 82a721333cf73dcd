"""musicnn's pre-trained taggers as Keras 3 models (the architectures; weights by `convert`).

Ports the two architectures of J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks
for music audio tagging" (ISMIR late-breaking demo, 2019), whose weights ship in the `musicnn` 0.1.0
wheel (ISC licence) as TF1 checkpoints:

* ``musicnn``: the musically motivated CNN of J. Pons, O. Nieto, M. Prockup, E. M. Schmidt, A. F. Ehmann
  and X. Serra, "End-to-end learning for music audio tagging at scale" (ISMIR 2018): vertical
  (timbral, 7x38 and 7x67) and horizontal (temporal, 128/64/32x1) filters pooled over frequency, a
  dense-residual 1D CNN mid-end, then max+mean temporal pooling and two dense layers. Its embedding is
  what the package calls ``penultimate``: the batch-normalised 200-unit dense layer.
* ``vgg``: the 5-block 3x3 VGG-like baseline of the same paper; its embedding is the package's
  ``pool5`` (2 x 1 x 128 after the last max pool), flattened to 256 values, the input of the output layer.
  MSD_vgg's shipped graph pools differently in its first two blocks from the package's ``models.vgg``
  (see `MSD_VGG_POOLS`); the port follows the graph, which its weights were trained in.

Layers that hold weights carry the name of their TF1 variable scope (``conv2d_3``, ``batch_normalization_7``,
``1CNN``, ``dense``), so `mgr_tf.models.musicnn.convert` maps checkpoint variables onto them by name. The TF1 layers'
defaults are kept: batch normalisation with epsilon 1e-3 after each ReLU convolution, "valid" max pooling.
"""

from __future__ import annotations

import itertools

import keras

from mgr_tf.models.musicnn.presets import (
    EMBEDDING_OUTPUT,
    INPUT_NAME,
    N_MELS,
    PATCH_FRAMES,
    TAGS_OUTPUT,
    VGG_POOLS,
    get_pretrained,
)

# ----------------------------------------------------------------------------------------------
# Architectures.


class _Scopes:
    """Hands out TF1's automatic layer names in creation order: conv2d, conv2d_1, ..., dense, dense_1."""

    def __init__(self):
        self._counts: dict[str, itertools.count] = {}

    def __call__(self, base: str) -> str:
        n = next(self._counts.setdefault(base, itertools.count()))
        return base if n == 0 else f"{base}_{n}"


def conv_block(x, filters: int, kernel: tuple[int, int], *, padding: str, scopes: _Scopes, name: str | None = None,
               pool: tuple[int | None, int | None] | None = None, pool_strides: tuple[int, int] | None = None,
               tag: str = ""):
    """ReLU convolution -> batch normalisation -> optional max pooling, on (batch, time, freq, channels).

    Args:
        x: input tensor.
        filters: output channels.
        kernel: (time, freq) kernel size.
        padding: "valid" or "same" (TensorFlow's asymmetric "same" for even kernels, as TF1 layers).
        scopes: TF1 name counter; the convolution is named `name` or the next ``conv2d`` scope.
        name: explicit TF1 scope of the convolution (the vgg layers are named 1CNN..5CNN).
        pool: max-pool size; None in a position means the whole axis (musicnn pools over all
            frequencies). No pooling if None.
        pool_strides: pool strides (default: the pool size).
        tag: readable prefix for the non-weight layers.
    """
    conv = keras.layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=name or scopes("conv2d"))
    x = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=scopes("batch_normalization"))(conv(x))
    if pool is not None:
        size = tuple(x.shape[i + 1] if p is None else p for i, p in enumerate(pool))
        x = keras.layers.MaxPooling2D(size, strides=pool_strides or size, padding="valid", name=f"{tag}_pool")(x)
    return x


def _time_pad(x, name: str):
    """Zero-pads 3 frames before and after (a "same" 7-tap convolution over time only)."""
    return keras.layers.ZeroPadding2D(((3, 3), (0, 0)), name=name)(x)


def _as_sequence(x, name: str):
    """(batch, time, 1, C) -> (batch, time, C): drops the pooled-away frequency axis."""
    return keras.layers.Reshape((x.shape[1], x.shape[3]), name=name)(x)


def _musicnn_body(x, num_classes: int, scopes: _Scopes, *, midend_filters: int = 64, backend_units: int = 200,
                  frontend_scale: float = 1.6):
    """musicnn (Pons et al. 2018/2019): returns (logits, penultimate embedding)."""
    frames, bands = x.shape[1], x.shape[2]
    x = keras.layers.Reshape((frames, bands, 1), name="expand_channels")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=scopes("batch_normalization"))(x)
    padded = _time_pad(x, "frontend_pad")
    timbral = int(frontend_scale * 128)
    temporal = int(frontend_scale * 32)
    # (kernel, input, padding) of the five front-end branches, in the package's creation order.
    branches = [
        ("timbral74", (7, int(0.4 * bands)), padded, "valid", timbral),
        ("timbral77", (7, int(0.7 * bands)), padded, "valid", timbral),
        ("temporal128", (128, 1), x, "same", temporal),
        ("temporal64", (64, 1), x, "same", temporal),
        ("temporal32", (32, 1), x, "same", temporal),
    ]
    front = [
        _as_sequence(conv_block(inp, filters, kernel, padding=pad, scopes=scopes, pool=(1, None), tag=tag), f"{tag}_seq")
        for tag, kernel, inp, pad, filters in branches
    ]
    front = keras.layers.Concatenate(axis=-1, name="frontend_concat")(front)  # (batch, T, 561)

    # Mid-end: three 7-frame convolutions across all channels, the last two residual; every stage is kept
    # (dense connections), as (batch, T, C) sequences.
    stages = [front]
    h = front
    for i in range(3):
        grid = keras.layers.Reshape((frames, h.shape[-1], 1), name=f"midend{i + 1}_grid")(h)
        y = conv_block(_time_pad(grid, f"midend{i + 1}_pad"), midend_filters, (7, h.shape[-1]), padding="valid",
                       scopes=scopes)
        y = _as_sequence(y, f"midend{i + 1}_seq")
        h = y if i == 0 else keras.layers.Add(name=f"midend{i + 1}_residual")([y, h])
        stages.append(h)
    mid = keras.layers.Concatenate(axis=-1, name="midend_concat")(stages)  # (batch, T, 753)

    # Back-end: max and mean over time, interleaved per channel as TF1's flatten of (C, 2) does.
    pooled = [keras.layers.Reshape((mid.shape[-1], 1), name=f"{kind}_pool_column")(layer(name=f"{kind}_pool")(mid))
              for kind, layer in (("max", keras.layers.GlobalMaxPooling1D),
                                  ("mean", keras.layers.GlobalAveragePooling1D))]
    h = keras.layers.Flatten(name="pool_flatten")(keras.layers.Concatenate(axis=-1, name="pool_concat")(pooled))
    h = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=scopes("batch_normalization"))(h)
    h = keras.layers.Dropout(0.5, name="backend_dropout")(h)
    h = keras.layers.Dense(backend_units, activation="relu", name=scopes("dense"))(h)
    penultimate = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=scopes("batch_normalization"))(h)
    h = keras.layers.Dropout(0.5, name="penultimate_dropout")(penultimate)
    logits = keras.layers.Dense(num_classes, name=scopes("dense"))(h)
    return logits, penultimate


def _vgg_body(x, num_classes: int, scopes: _Scopes, *, filters: int = 128, pools=VGG_POOLS):
    """The VGG-like baseline (5 conv blocks): returns (logits, flattened pool5 embedding)."""
    frames, bands = x.shape[1], x.shape[2]
    x = keras.layers.Reshape((frames, bands, 1), name="expand_channels")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=scopes("batch_normalization"))(x)
    for i, (pool, strides) in enumerate(pools, start=1):
        if i > 1:
            x = keras.layers.Dropout(0.25, name=f"pool{i - 1}_dropout")(x)
        x = conv_block(x, filters, (3, 3), padding="same", scopes=scopes, name=f"{i}CNN", pool=pool,
                       pool_strides=strides, tag=f"block{i}")
    pool5 = keras.layers.Flatten(name="pool5_flatten")(x)
    h = keras.layers.Dropout(0.5, name="pool5_dropout")(pool5)
    logits = keras.layers.Dense(num_classes, name=scopes("dense"))(h)
    return logits, pool5


# The network body of each architecture: fn(patch, num_classes, scopes, **options) -> (logits, embedding).
BODIES = {"musicnn": _musicnn_body, "vgg": _vgg_body}


def build_musicnn(model_name: str) -> keras.Model:
    """The Keras port of a shipped musicnn model, randomly initialised (`mgr_tf.pretrained` loads weights).

    Input ``patch``: (batch, 187, 96) log-mel patches from `musicnn_frontend`. Outputs (a dict):
    ``tags`` (batch, 50) sigmoid and ``embedding`` (the package's penultimate / pool5 features).

    Args:
        model_name: MTT_musicnn, MSD_musicnn, MTT_vgg or MSD_vgg.
    """
    spec = get_pretrained(model_name)
    patch = keras.Input((PATCH_FRAMES, N_MELS), name=INPUT_NAME)
    logits, embedding = BODIES[spec.architecture](patch, len(spec.tags), _Scopes(), **spec.options)
    outputs = {
        TAGS_OUTPUT: keras.layers.Activation("sigmoid", name=TAGS_OUTPUT)(logits),
        EMBEDDING_OUTPUT: keras.layers.Identity(name=EMBEDDING_OUTPUT)(embedding),
    }
    return keras.Model(patch, outputs, name=model_name)
