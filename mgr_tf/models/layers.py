"""Custom layers shared by the backbones; each is registered so a `.keras` file reloads it.

Every layer keeps its computation in TensorFlow ops, so it traces into `tf.function`, XLA and a
SavedModel. The padding convention of the project: a frame whose every band is exactly 0.0 is padding.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

PACKAGE = "mgr_tf"


def _frame_mask(x: tf.Tensor) -> tf.Tensor:
    """True for real frames of a (batch, time, bands) tensor, False for all-zero padding frames."""
    # keras.ops, not tf: compute_mask also runs on symbolic KerasTensors while a model is built.
    return keras.ops.any(keras.ops.not_equal(x, 0.0), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpectrogramNormalization(keras.layers.Layer):
    """Per-band standardisation with the training split's statistics, stored in the model.

    Padding frames (all bands exactly 0.0) stay 0.0 and are reported as masked, so the mask reaches
    the LSTM layers of the backbone.

    Args:
        num_bands: number of bands (the last input axis).
        mean: per-band mean of the training split (length num_bands); None = 0.
        std: per-band standard deviation; None = 1. Values below 1e-6 are raised to 1e-6.
        **kwargs: base layer arguments (name, dtype, ...).
    """

    def __init__(self, num_bands: int, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        self.num_bands = int(num_bands)
        self._init_mean = None if mean is None else np.asarray(mean, np.float32).reshape(-1)
        self._init_std = None if std is None else np.maximum(np.asarray(std, np.float32).reshape(-1), 1e-6)
        for label, value in (("mean", self._init_mean), ("std", self._init_std)):
            if value is not None and value.shape[0] != self.num_bands:
                raise ValueError(f"normalisation {label} has {value.shape[0]} values, expected {self.num_bands} bands")
        self.supports_masking = True

    def build(self, input_shape):
        mean_init = "zeros" if self._init_mean is None else keras.initializers.Constant(self._init_mean)
        std_init = "ones" if self._init_std is None else keras.initializers.Constant(self._init_std)
        self.mean = self.add_weight(name="mean", shape=(self.num_bands,), initializer=mean_init, trainable=False)
        self.std = self.add_weight(name="std", shape=(self.num_bands,), initializer=std_init, trainable=False)

    def call(self, inputs):
        mask = _frame_mask(inputs)
        normed = (inputs - tf.convert_to_tensor(self.mean)) / tf.convert_to_tensor(self.std)
        return tf.where(mask[..., None], normed, tf.zeros_like(normed))

    def compute_mask(self, inputs, mask=None):
        return _frame_mask(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        # The statistics travel as weights; the config only fixes the shapes.
        return {**super().get_config(), "num_bands": self.num_bands}


@keras.saving.register_keras_serializable(package=PACKAGE)
class FixedLength(keras.layers.Layer):
    """Pads with zero frames at the end, or crops, the time axis to exactly `frames`.

    Cropping keeps the centre of a longer input (the published code keeps 30 s clips whole, so a
    longer input is an edge case; its centre is the most representative part). Padding is appended
    at the end, matching the data pipeline. The output carries no mask: convolutions see the zeros.

    Args:
        frames: output length in frames.
        crop: "centre" or "start".
        **kwargs: base layer arguments.
    """

    def __init__(self, frames: int, crop: str = "centre", **kwargs):
        super().__init__(**kwargs)
        if crop not in ("centre", "start"):
            raise ValueError(f"crop must be 'centre' or 'start', got {crop!r}")
        self.frames = int(frames)
        self.crop = crop

    def call(self, inputs):
        length = tf.shape(inputs)[1]
        start = (tf.maximum(length - self.frames, 0) // 2) if self.crop == "centre" else 0
        cropped = inputs[:, start:start + self.frames]
        pad = self.frames - tf.shape(cropped)[1]
        padded = tf.pad(cropped, [[0, 0], [0, pad], [0, 0]])
        return tf.ensure_shape(padded, [None, self.frames, inputs.shape[-1]])

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.frames, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "crop": self.crop}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedFramePooling(keras.layers.Layer):
    """Averages each run of `stride` frames over its real (unmasked) frames only.

    A pooled step whose frames are all padding comes out as an all-zero step, which a following
    `keras.layers.Masking(0.0)` masks, so appending zero frames changes neither the pooled real
    steps nor the final LSTM state.

    Args:
        stride: frames per pooled step; 1 = identity.
        **kwargs: base layer arguments.
    """

    def __init__(self, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if self.stride == 1:
            return inputs
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], tf.bool)
        s = self.stride
        steps = (tf.shape(inputs)[1] + s - 1) // s
        pad = steps * s - tf.shape(inputs)[1]
        x = tf.pad(inputs, [[0, 0], [0, pad], [0, 0]])
        m = tf.pad(tf.cast(mask, inputs.dtype), [[0, 0], [0, pad]])
        x = tf.reshape(x, [tf.shape(x)[0], steps, s, inputs.shape[-1]])
        m = tf.reshape(m, [tf.shape(m)[0], steps, s])
        count = tf.reduce_sum(m, axis=-1)
        return tf.reduce_sum(x * m[..., None], axis=2) / tf.maximum(count, 1.0)[..., None]

    def compute_mask(self, inputs, mask=None):
        # A pooled padding step is exactly zero; a `keras.layers.Masking` after this layer masks it
        # (a mask built here from tf ops could not join a functional graph).
        return mask if self.stride == 1 else None

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else -(-input_shape[1] // self.stride)
        return (input_shape[0], steps, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEmbedding(keras.layers.Layer):
    """AST patch embedding: (batch, time, bands) -> (batch, 1 + patches, dim) tokens.

    A strided convolution cuts the spectrogram into (possibly overlapping) patches and projects
    each to `dim`; a learned [CLS] token is prepended and a learned position embedding added, as in
    the Audio Spectrogram Transformer (Gong et al., Interspeech 2021).

    Args:
        dim: token width.
        patch: patch size (time, bands).
        stride: patch stride (time, bands).
        l2: L2 factor on the projection kernel.
        **kwargs: base layer arguments.
    """

    def __init__(self, dim: int, patch=(16, 16), stride=(16, 16), l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.patch, self.stride, self.l2 = int(dim), tuple(patch), tuple(stride), float(l2)
        self.projection = keras.layers.Conv2D(
            self.dim, self.patch, strides=self.stride, padding="valid",
            kernel_regularizer=kernel_regularizer(self.l2), name="projection")

    def build(self, input_shape):
        frames, bands = input_shape[1], input_shape[2]
        if frames is None or frames < self.patch[0] or bands < self.patch[1]:
            raise ValueError(f"AST input ({frames} frames, {bands} bands) is smaller than the patch {self.patch}")
        self.grid = ((frames - self.patch[0]) // self.stride[0] + 1, (bands - self.patch[1]) // self.stride[1] + 1)
        self.projection.build((input_shape[0], frames, bands, 1))
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, self.dim),
                                         initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.position = self.add_weight(name="position", shape=(1, 1 + self.grid[0] * self.grid[1], self.dim),
                                        initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, inputs):
        patches = self.projection(inputs[..., None])
        tokens = tf.reshape(patches, [tf.shape(patches)[0], self.grid[0] * self.grid[1], self.dim])
        cls = tf.tile(tf.convert_to_tensor(self.cls_token), [tf.shape(tokens)[0], 1, 1])
        return tf.concat([cls, tokens], axis=1) + tf.convert_to_tensor(self.position)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1 + self.grid[0] * self.grid[1], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "patch": self.patch, "stride": self.stride, "l2": self.l2}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(keras.layers.Layer):
    """Pre-norm transformer encoder block (ViT style): x + MHA(LN(x)), then x + MLP(LN(x)).

    Args:
        dim: token width.
        heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to dim.
        dropout: dropout after attention and in the MLP.
        l2: L2 factor on the dense kernels.
        **kwargs: base layer arguments.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, l2: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.mlp_ratio = int(dim), int(heads), float(mlp_ratio)
        self.dropout, self.l2 = float(dropout), float(l2)
        reg = kernel_regularizer(self.l2)
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attention = keras.layers.MultiHeadAttention(self.heads, self.dim // self.heads, dropout=self.dropout,
                                                         kernel_regularizer=reg, name="attention")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.mlp_in = keras.layers.Dense(int(self.dim * self.mlp_ratio), activation="gelu", kernel_regularizer=reg,
                                         name="mlp_in")
        self.mlp_out = keras.layers.Dense(self.dim, kernel_regularizer=reg, name="mlp_out")
        self.drop = keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build(tuple(input_shape[:-1]) + (int(self.dim * self.mlp_ratio),))

    def call(self, inputs, training=None):
        h = self.norm1(inputs)
        x = inputs + self.drop(self.attention(h, h, training=training), training=training)
        h = self.mlp_out(self.drop(self.mlp_in(self.norm2(x)), training=training))
        return x + self.drop(h, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "mlp_ratio": self.mlp_ratio,
                "dropout": self.dropout, "l2": self.l2}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassTokenPooling(keras.layers.Layer):
    """Takes the [CLS] token (position 0) of a token sequence.

    Args:
        **kwargs: base layer arguments.
    """

    def call(self, inputs):
        return inputs[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class LabelledDense(keras.layers.Dense):
    """A `Dense` output layer that also stores the names of its output units (e.g. genre names).

    Args:
        units: output units.
        labels: one name per unit, or None.
        **kwargs: `keras.layers.Dense` arguments.
    """

    def __init__(self, units: int, labels=None, **kwargs):
        super().__init__(units, **kwargs)
        if labels is not None and len(labels) != units:
            raise ValueError(f"{len(labels)} label names given for {units} output units")
        self.labels = None if labels is None else [str(x) for x in labels]

    def get_config(self):
        return {**super().get_config(), "labels": self.labels}


def kernel_regularizer(l2: float):
    """An L2 kernel regulariser, or None when `l2` is 0.

    Args:
        l2: the L2 factor.
    """
    return keras.regularizers.L2(l2) if l2 else None


@keras.saving.register_keras_serializable(package=PACKAGE)
class SplitWindows(keras.layers.Layer):
    """Cuts (batch, time, bands) into overlapping windows: ((batch * windows), window, bands) + weights.

    Multi-window inference for patch-trained models: a clip of any length becomes
    max(1, ceil((time - window) / hop) + 1) windows (the last zero-padded), run through the backbone as
    a bigger batch; `WindowMean` then averages the window embeddings back to one per clip. The weight
    of a window is its share of real (not all-zero padding) frames, so padding does not dilute a clip.

    Args:
        window: window length in frames (the patch length the model was trained on).
        hop: frames between window starts.
        **kwargs: base layer arguments.
    """

    def __init__(self, window: int, hop: int, **kwargs):
        super().__init__(**kwargs)
        self.window, self.hop = int(window), int(hop)

    def call(self, inputs):
        length = tf.shape(inputs)[1]
        count = 1 + (tf.maximum(length - self.window, 0) + self.hop - 1) // self.hop
        total = (count - 1) * self.hop + self.window
        x = tf.pad(inputs, [[0, 0], [0, tf.maximum(total - length, 0)], [0, 0]])
        frames = tf.signal.frame(x, self.window, self.hop, axis=1)  # (batch, count, window, bands)
        weights = tf.reduce_mean(tf.cast(tf.reduce_any(tf.not_equal(frames, 0.0), axis=-1), inputs.dtype), -1)
        windows = tf.reshape(frames, [-1, self.window, inputs.shape[-1]])
        return windows, weights

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (None, self.window, input_shape[-1]), (input_shape[0], None)

    def get_config(self):
        return {**super().get_config(), "window": self.window, "hop": self.hop}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowMean(keras.layers.Layer):
    """Weighted mean of window embeddings per clip: [(batch * windows, dim), (batch, windows)] -> (batch, dim).

    Windows of weight 0 (all padding) are left out; a clip that is all padding gets the plain mean.
    """

    def call(self, inputs):
        embeddings, weights = inputs
        batch, count = tf.shape(weights)[0], tf.shape(weights)[1]
        x = tf.reshape(embeddings, [batch, count, -1])
        total = tf.reduce_sum(weights, axis=1, keepdims=True)
        weights = tf.where(total > 0, weights / tf.maximum(total, 1e-9), tf.ones_like(weights) / tf.cast(count, weights.dtype))
        out = tf.reduce_sum(x * weights[..., None], axis=1)
        return tf.ensure_shape(out, [None, embeddings.shape[-1]])

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], input_shape[0][-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowPool(keras.layers.Layer):
    """Pooled window embeddings per clip: [(batch * windows, dim), (batch, windows)] -> (batch, dim * k).

    `mode` "mean" is `WindowMean`; "mean+std" appends the weighted standard deviation over the windows; "max" is
    the maximum over the windows of weight > 0 (all windows for a clip that is all padding).

    Args:
        mode: "mean", "mean+std" or "max".
        **kwargs: base layer arguments.
    """

    MODES = ("mean", "mean+std", "max")

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"window pooling must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode = mode

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}

    def call(self, inputs):
        embeddings, weights = inputs
        batch, count = tf.shape(weights)[0], tf.shape(weights)[1]
        x = tf.reshape(embeddings, [batch, count, -1])
        total = tf.reduce_sum(weights, axis=1, keepdims=True)
        real = tf.where(total > 0, weights, tf.ones_like(weights))
        if self.mode == "max":
            out = tf.reduce_max(tf.where(real[..., None] > 0, x, tf.fill(tf.shape(x), x.dtype.min)), axis=1)
        else:
            share = real / tf.reduce_sum(real, axis=1, keepdims=True)
            mean = tf.reduce_sum(x * share[..., None], axis=1)
            out = mean
            if self.mode == "mean+std":
                variance = tf.reduce_sum(tf.square(x - mean[:, None]) * share[..., None], axis=1)
                out = tf.concat([mean, tf.sqrt(variance + 1e-12)], axis=-1)
        return tf.ensure_shape(out, [None, embeddings.shape[-1] * (2 if self.mode == "mean+std" else 1)])

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], input_shape[0][-1] * (2 if self.mode == "mean+std" else 1))


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomGain(keras.layers.Layer):
    """Training-only loudness augmentation: adds one random dB offset per example to the dB bands.

    A gain of g dB shifts every log-mel band of a clip by g; chroma is gain-invariant and left alone.
    Padding frames (all zero) stay zero. Identity at inference, so exports are unaffected.

    Args:
        max_db: the offset is uniform in [-max_db, max_db].
        db_bands: the leading bands that are in dB (the log-mel rows of the feature type).
        seed: seed of the layer's random stream.
        **kwargs: base layer arguments.
    """

    def __init__(self, max_db: float, db_bands: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_db, self.db_bands, self.seed = float(max_db), int(db_bands), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training or not self.max_db or not self.db_bands:
            return inputs
        batch = tf.shape(inputs)[0]
        offset = keras.random.uniform((batch, 1, 1), -self.max_db, self.max_db, seed=self.seed_generator)
        bands = tf.shape(inputs)[-1]
        which = tf.cast(tf.range(bands) < self.db_bands, inputs.dtype)
        real = tf.cast(tf.reduce_any(tf.not_equal(inputs, 0.0), axis=-1, keepdims=True), inputs.dtype)
        return inputs + offset * which * real

    def get_config(self):
        return {**super().get_config(), "max_db": self.max_db, "db_bands": self.db_bands, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpecAugment(keras.layers.Layer):
    """Training-only time and frequency masking (Park et al., "SpecAugment", Interspeech 2019).

    Applied to the normalised spectrogram, so a masked span becomes 0 = the training mean. Each example
    gets `time_masks` spans of up to `time_width` frames and `freq_masks` spans of up to `freq_width`
    bands, at random places. Identity at inference.

    Args:
        time_masks: number of time masks per example.
        time_width: maximum width of a time mask in frames.
        freq_masks: number of frequency masks per example.
        freq_width: maximum width of a frequency mask in bands.
        seed: seed of the layer's random stream.
        **kwargs: base layer arguments.
    """

    def __init__(self, time_masks: int = 2, time_width: int = 20, freq_masks: int = 2, freq_width: int = 16,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def _keep(self, batch, size, masks, width):
        """(batch, size) 1.0 where no mask covers the position."""
        keep = tf.ones((batch, size))
        positions = tf.range(size)[None, :]
        for _ in range(masks):
            w = tf.cast(keras.random.uniform((batch, 1), 0, width + 1, seed=self.seed_generator), tf.int32)
            start = tf.cast(keras.random.uniform((batch, 1), 0, 1, seed=self.seed_generator)
                            * tf.cast(tf.maximum(size - w, 1), tf.float32), tf.int32)
            keep *= 1.0 - tf.cast((positions >= start) & (positions < start + w), tf.float32)
        return keep

    def call(self, inputs, training=None):
        if not training or (not self.time_masks and not self.freq_masks):
            return inputs
        batch, frames, bands = tf.shape(inputs)[0], tf.shape(inputs)[1], tf.shape(inputs)[2]
        keep_t = self._keep(batch, frames, self.time_masks, self.time_width)[:, :, None]
        keep_f = self._keep(batch, bands, self.freq_masks, self.freq_width)[:, None, :]
        return inputs * tf.cast(keep_t * keep_f, inputs.dtype)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "time_masks": self.time_masks, "time_width": self.time_width,
                "freq_masks": self.freq_masks, "freq_width": self.freq_width, "seed": self.seed}


# Per-band clip statistics (the summary baseline's backbone, `mgr_tf.models.summary`).
@keras.saving.register_keras_serializable(package=PACKAGE)
class SummaryStatistics(keras.layers.Layer):
    """Per-band statistics over the real (unmasked) frames: (batch, time, bands) -> (batch, bands * stats).

    Args:
        stats: names of `mgr_tf.models.summary.STATISTICS`, in output order.
        **kwargs: base layer arguments.
    """

    def __init__(self, stats=("mean", "std"), **kwargs):
        super().__init__(**kwargs)
        self.stats = tuple(stats)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = tf.reduce_any(tf.not_equal(inputs, 0.0), axis=-1)
        m = tf.cast(mask, inputs.dtype)[..., None]
        count = tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
        mean = tf.reduce_sum(inputs * m, axis=1) / count
        var = tf.reduce_sum(tf.square(inputs - mean[:, None]) * m, axis=1) / count
        big = tf.constant(1e9, inputs.dtype)
        values = {
            "mean": lambda: mean,
            "std": lambda: tf.sqrt(var + 1e-8),
            "min": lambda: tf.reduce_min(tf.where(m > 0, inputs, big), axis=1) * tf.cast(count > 0, inputs.dtype),
            "max": lambda: tf.reduce_max(tf.where(m > 0, inputs, -big), axis=1) * tf.cast(count > 0, inputs.dtype),
            "delta_std": lambda: _delta_std(inputs, m),
        }
        return tf.concat([values[name]() for name in self.stats], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] * len(self.stats))

    def get_config(self):
        return {**super().get_config(), "stats": list(self.stats)}


def _delta_std(x, m):
    d = x[:, 1:] - x[:, :-1]
    dm = m[:, 1:] * m[:, :-1]
    count = tf.maximum(tf.reduce_sum(dm, axis=1), 1.0)
    mean = tf.reduce_sum(d * dm, axis=1) / count
    return tf.sqrt(tf.reduce_sum(tf.square(d - mean[:, None]) * dm, axis=1) / count + 1e-8)
