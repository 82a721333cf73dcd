"""musicnn's pre-trained taggers as Keras 3 models, and their 16 kHz log-mel front end in TensorFlow ops.

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
``1CNN``, ``dense``), so `mgr_tf.pretrained` maps checkpoint variables onto them by name. The TF1 layers'
defaults are kept: batch normalisation with epsilon 1e-3 after each ReLU convolution, "valid" max pooling.

Front end (`musicnn_frontend`), as the package's ``extractor.batch_data``: 16 kHz mono, STFT with
n_fft 512 / hop 256 (periodic Hann, centred frames with reflect padding, librosa's default when the
models were trained), power spectrum, 96-band Slaney mel filter bank (``librosa.filters.mel`` defaults:
htk=False, norm="slaney", 0 .. 8 kHz), the mel power rounded to float16 (the package stores it so), then
``log10(1 + 10000 x)``, cut into non-overlapping 187-frame (3 s) patches, an incomplete last patch dropped.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

# Signal settings of the shipped models (musicnn/configuration.py and each model's config.json).
SAMPLE_RATE = 16000
FFT_SIZE = 512
FFT_HOP = 256
N_MELS = 96
# librosa.time_to_frames(3 s, sr=16000, n_fft=512, hop_length=256) + 1, as the package's extractor.
PATCH_FRAMES = 187
LOG_SCALE = 10000.0

INPUT_NAME = "patch"
TAGS_OUTPUT = "tags"
EMBEDDING_OUTPUT = "embedding"

MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)
"""The 50 MagnaTagATune tags of the MTT_* models, in output order (musicnn/configuration.py)."""

MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
)
"""The 50 Million Song Dataset (last.fm) tags of the MSD_* models, in output order."""


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


# (pool size, strides) after each of the 5 vgg blocks, as in the package's models.vgg.
VGG_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
# MSD_vgg was trained with another variant (config "model_number": 1): its shipped graph pools 4x1 / 4x1 and
# 1x4 / 1x4 in the first two blocks. The package's models.vgg builds VGG_POOLS for it, which does not match
# its weights; the port follows the graph the weights were trained in.
MSD_VGG_POOLS = (((4, 1), (4, 1)), ((1, 4), (1, 4)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))


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


@dataclass(frozen=True)
class Architecture:
    """One network family of the package.

    Args:
        body: fn(patch, num_classes, scopes, **options) -> (logits, embedding) Keras tensors.
        embedding: what the embedding is, in the package's feature names.
        graph_embedding: the tensor of the shipped TF1 graph that equals the embedding.
    """

    body: Callable
    embedding: str
    graph_embedding: str


ARCHITECTURES: dict[str, Architecture] = {
    "musicnn": Architecture(_musicnn_body, "penultimate (200, batch-normalised dense)",
                            "model/batch_normalization_10/batchnorm/add_1:0"),
    "vgg": Architecture(_vgg_body, "pool5, flattened (2 x 1 x 128 = 256)", "model/Flatten/flatten/Reshape:0"),
}


@dataclass(frozen=True)
class PretrainedModel:
    """A model shipped in the musicnn wheel: its architecture, options and tag names."""

    architecture: str
    tags: tuple[str, ...]
    options: dict = field(default_factory=dict)


PRETRAINED: dict[str, PretrainedModel] = {
    "MTT_musicnn": PretrainedModel("musicnn", MTT_TAGS, {"midend_filters": 64, "backend_units": 200}),
    "MSD_musicnn": PretrainedModel("musicnn", MSD_TAGS, {"midend_filters": 64, "backend_units": 200}),
    "MTT_vgg": PretrainedModel("vgg", MTT_TAGS, {"filters": 128}),
    "MSD_vgg": PretrainedModel("vgg", MSD_TAGS, {"filters": 128, "pools": MSD_VGG_POOLS}),
}
"""The four models of the musicnn 0.1.0 wheel (MSD_musicnn_big is not in the wheel)."""

GRAPH_INPUT = "model/Placeholder:0"
GRAPH_TAGS = "model/Sigmoid:0"


def get_pretrained(model_name: str) -> PretrainedModel:
    """The `PRETRAINED` entry `model_name`; ValueError naming the known models otherwise."""
    try:
        return PRETRAINED[model_name]
    except KeyError:
        raise ValueError(f"unknown musicnn model {model_name!r}; known: {', '.join(PRETRAINED)}") from None


def tag_names(model_name: str) -> tuple[str, ...]:
    """The 50 tag names of `model_name`, in output order."""
    return get_pretrained(model_name).tags


def build_musicnn(model_name: str) -> keras.Model:
    """The Keras port of a shipped musicnn model, randomly initialised (`mgr_tf.pretrained` loads weights).

    Input ``patch``: (batch, 187, 96) log-mel patches from `musicnn_frontend`. Outputs (a dict):
    ``tags`` (batch, 50) sigmoid and ``embedding`` (the package's penultimate / pool5 features).

    Args:
        model_name: MTT_musicnn, MSD_musicnn, MTT_vgg or MSD_vgg.
    """
    spec = get_pretrained(model_name)
    arch = ARCHITECTURES[spec.architecture]
    patch = keras.Input((PATCH_FRAMES, N_MELS), name=INPUT_NAME)
    logits, embedding = arch.body(patch, len(spec.tags), _Scopes(), **spec.options)
    outputs = {
        TAGS_OUTPUT: keras.layers.Activation("sigmoid", name=TAGS_OUTPUT)(logits),
        EMBEDDING_OUTPUT: keras.layers.Identity(name=EMBEDDING_OUTPUT)(embedding),
    }
    return keras.Model(patch, outputs, name=model_name)


# ----------------------------------------------------------------------------------------------
# Front end.


@functools.lru_cache(maxsize=1)
def _mel_matrix() -> np.ndarray:
    """(257, 96) Slaney mel filter bank of ``librosa.filters.mel`` defaults at 16 kHz / n_fft 512."""
    import librosa

    fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=FFT_SIZE, n_mels=N_MELS, htk=False, norm="slaney",
                             dtype=np.float32)
    return np.ascontiguousarray(fb.T)


def musicnn_log_mel(waveform_16k) -> tf.Tensor:
    """(..., samples) 16 kHz mono float -> (..., 1 + samples // 256, 96) musicnn log-mel frames."""
    x = tf.convert_to_tensor(waveform_16k, tf.float32)
    half = FFT_SIZE // 2
    # Reflect padding needs more samples than the pad; shorter inputs get zeros (tags of < 16 ms are moot).
    long_enough = tf.shape(x)[-1] > half
    paddings = [[0, 0]] * (x.shape.rank - 1) + [[half, half]]
    x = tf.cond(long_enough, lambda: tf.pad(x, paddings, mode="REFLECT"), lambda: tf.pad(x, paddings))
    spec = tf.signal.stft(x, frame_length=FFT_SIZE, frame_step=FFT_HOP, fft_length=FFT_SIZE,
                          window_fn=tf.signal.hann_window, pad_end=False)
    power = tf.math.square(tf.math.real(spec)) + tf.math.square(tf.math.imag(spec))
    mel = tf.tensordot(power, tf.constant(_mel_matrix()), axes=1)
    # The package keeps the mel power as float16, then takes the log in float32 (NumPy < 1.17 promoted
    # float16 * 10000 to float32).
    mel = tf.cast(tf.cast(mel, tf.float16), tf.float32)
    return tf.math.log(1.0 + LOG_SCALE * mel) / tf.math.log(tf.constant(10.0))


def musicnn_frontend(waveform_16k) -> tf.Tensor:
    """Waveform(s) at 16 kHz -> musicnn input patches, as the package's ``extractor.batch_data``.

    Non-overlapping 187-frame (3 s) patches; the incomplete last patch is dropped. A clip shorter than one
    patch (where the package fails) is repeat-padded to 187 frames (the "repeat-pad" of its training
    config), giving one patch.

    Args:
        waveform_16k: float (samples,) -> (patches, 187, 96), or (batch, samples) ->
            (batch, patches, 187, 96). Audio at another rate must be resampled first (`load_audio_16k`).
    """
    frames = musicnn_log_mel(waveform_16k)
    n = tf.shape(frames)[-2]
    reps = (PATCH_FRAMES + n - 1) // tf.maximum(n, 1)
    multiples = tf.stack([1] * (frames.shape.rank - 2) + [reps, 1])
    frames = tf.cond(n < PATCH_FRAMES, lambda: tf.tile(frames, multiples)[..., :PATCH_FRAMES, :], lambda: frames)
    return tf.signal.frame(frames, PATCH_FRAMES, PATCH_FRAMES, axis=-2, pad_end=False)


def musicnn_input(waveform, sample_rate: int) -> np.ndarray:
    """The stored encoder input of one clip: (frames, 96) float32 log-mel at 16 kHz (not cut into patches).

    What `mgr_tf.ingest --encoder musicnn` writes beside each fused array; the musicnn backbone cuts it
    into 187-frame patches in the graph.

    Args:
        waveform: mono float waveform (samples,).
        sample_rate: its rate (e.g. the project's 22050 Hz clips); resampled to 16 kHz with librosa.
    """
    frames = musicnn_log_mel(resample_to_16k(np.asarray(waveform, np.float32), sample_rate))
    return np.asarray(frames, np.float32)


@keras.saving.register_keras_serializable(package="mgr_tf")
class MusicnnFrontend(keras.layers.Layer):
    """(batch, samples) 16 kHz mono waveforms -> (batch, frames, 96) musicnn log-mel frames, in the graph.

    The `serving_waveform` front end of models trained on the musicnn feature type (`musicnn_log_mel`).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True  # no weights; ExportArchive.track wants built layers

    def call(self, waveform):
        return musicnn_log_mel(waveform)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, N_MELS)


def load_audio_16k(path: str | Path) -> np.ndarray:
    """Reads an audio file as mono float32 at 16 kHz (musicnn's rate).

    Audio at any other rate (e.g. the project's 22050 Hz clips) is resampled by librosa (soxr_hq, librosa's
    current default; the package used librosa 0.7's kaiser_best, a difference far below the models'
    sensitivity).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be decoded or holds no samples.
    """
    import warnings

    import librosa

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            audio, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True, dtype=np.float32)
    except Exception as exc:  # soundfile/audioread raise many unrelated types for bad data
        raise ValueError(f"{path}: cannot decode audio ({type(exc).__name__}: {exc})") from None
    if audio.size == 0:
        raise ValueError(f"{path}: no audio samples")
    return audio


def resample_to_16k(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resamples a mono waveform at `sample_rate` (e.g. 22050 Hz) to musicnn's 16 kHz with librosa."""
    import librosa

    if sample_rate == SAMPLE_RATE:
        return np.asarray(waveform, np.float32)
    return librosa.resample(np.asarray(waveform, np.float32), orig_sr=sample_rate, target_sr=SAMPLE_RATE)
