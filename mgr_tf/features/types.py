"""The feature-type registry: what a model's `spectrogram` input is, as a function of the stored arrays.

Every stored example is a fused (time, 140) array: rows 0..127 of the disk array are log-mel, 128..139
chroma (reference section 1). A feature type derives a model's input from it in graph (so the data
pipeline, `serving_waveform` and predict all compute the same thing) and states its band count. The
run's config.json and the export's assets record the feature type by name.

A pretrained encoder's input cannot be derived from the fused arrays (musicnn wants 16 kHz, 96 mel bands,
another hop): such a feature type names another `source`, an array that `mgr_tf.ingest --encoder NAME`
computes from the audio and stores next to each fused array (`<id>.NAME.npy`). Spectrogram-only roots,
such as the published FMA folders, have no audio and so cannot feed it.

Adding a feature type = one `register_feature_type(FeatureType(...))` line with its function. A pretrained
family registers the encoder input it stores with its backbone (`mgr_tf.models`), so lookups of such a type
need `mgr_tf.models` imported (the data layer and the command lines do). This module imports no TensorFlow:
the derived types are slicing and one matmul, which NumPy arrays, tensors and Keras tensors all support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mgr_tf.core.config import FeatureConfig
from mgr_tf.core.registry import Registry

SPECTROGRAM = "spectrogram"  # the TFDS record key of the fused arrays


@dataclass(frozen=True)
class FeatureType:
    """One model input derived from the fused (time, mel + chroma) array.

    Args:
        name: the `--features` value.
        description: one line for --help and reports.
        bands: the number of bands per frame, given the data's FeatureConfig.
        derive: fn(fused, cfg) -> features: fused is a float32 tensor or array (..., time, mel + chroma);
            the result is (..., time, bands). Must be graph-friendly (tf ops or slicing).
        db_bands: fn(cfg) -> how many leading bands are in dB (log-mel), which random-gain augmentation
            shifts; 0 = none.
        source: the stored array it is derived from: "spectrogram" (the fused arrays) or the name of an
            encoder input that `mgr_tf.ingest --encoder` stores per clip (then `derive` takes that array).
        frames: the pad/crop length of a full clip in this type's frames; None = the fused arrays' 1293.
        from_audio: for an encoder input: fn(clip waveform at cfg.sample_rate, cfg) -> (frames, bands)
            float32, what ingest stores.
        sample_rate: fn(cfg) -> the rate of the waveforms `serving_waveform` takes.
        waveform_layer: fn(cfg) -> a Keras layer mapping (batch, samples) waveforms to the features in
            the graph; None = `mgr_tf.features.spectral.AudioFeatures` (the fused features, then `derive`).
    """

    name: str
    description: str
    bands: Callable[[FeatureConfig], int]
    derive: Callable
    db_bands: Callable[[FeatureConfig], int] = lambda cfg: 0
    source: str = SPECTROGRAM
    frames: int | None = None
    from_audio: Callable | None = None
    sample_rate: Callable[[FeatureConfig], int] = lambda cfg: cfg.sample_rate
    waveform_layer: Callable | None = None

    @property
    def stored(self) -> bool:
        """True for an encoder input stored by `ingest --encoder` (not derivable from the fused arrays)."""
        return self.source != SPECTROGRAM


FEATURE_TYPES: Registry[FeatureType] = Registry("features")
register_feature_type = FEATURE_TYPES.register
get_feature_type = FEATURE_TYPES.lookup


def num_bands(name: str, cfg: FeatureConfig = FeatureConfig()) -> int:
    """Bands per frame of feature type `name` for data made with `cfg`."""
    return get_feature_type(name).bands(cfg)


def derive(name: str, fused, cfg: FeatureConfig = FeatureConfig()):
    """Feature type `name` computed from a fused (..., time, mel + chroma) tensor or array."""
    return get_feature_type(name).derive(fused, cfg)


register_feature_type(FeatureType(
    "fused", "log-mel and chroma stacked (the stored arrays as they are)",
    lambda cfg: cfg.n_mels + cfg.n_chroma, lambda x, cfg: x, lambda cfg: cfg.n_mels))
register_feature_type(FeatureType(
    "mel", "the log-mel rows (dB)", lambda cfg: cfg.n_mels, lambda x, cfg: x[..., :cfg.n_mels],
    lambda cfg: cfg.n_mels))
register_feature_type(FeatureType(
    "chroma", "the chroma rows", lambda cfg: cfg.n_chroma,
    lambda x, cfg: x[..., cfg.n_mels:cfg.n_mels + cfg.n_chroma]))


def dct_matrix(n_in: int, n_out: int):
    """The orthonormal DCT-II as a (n_in, n_out) float32 matrix: `x @ dct_matrix(n, k)` keeps k coefficients.

    Equal to `scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[..., :n_out]`, which is what
    `librosa.feature.mfcc` applies (lifter 0) along the mel axis. A fixed matrix (rather than an FFT-based
    DCT) is one matmul that NumPy, TensorFlow, XLA and SavedModels all run the same way.

    Args:
        n_in: input bands (mel bands).
        n_out: coefficients kept (at most n_in).
    """
    if not 1 <= n_out <= n_in:
        raise ValueError(f"n_mfcc must be between 1 and the {n_in} mel bands, got {n_out}")
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[:, 0] = np.sqrt(1.0 / n_in)
    return basis.astype(np.float32)


def _mfcc(fused, cfg: FeatureConfig):
    """MFCCs of the log-mel (dB) rows: `librosa.feature.mfcc(S=log_mel_db, n_mfcc=cfg.n_mfcc)`, frames first."""
    basis = dct_matrix(cfg.n_mels, cfg.n_mfcc)
    log_mel = fused[..., :cfg.n_mels]
    if isinstance(log_mel, np.ndarray):
        basis = basis.astype(log_mel.dtype, copy=False)
    return log_mel @ basis  # NumPy, tf.Tensor (broadcast matmul) and KerasTensor (keras.ops.matmul) alike


register_feature_type(FeatureType(
    "mfcc", "MFCCs (orthonormal DCT-II of the log-mel rows, as librosa; --n-mfcc coefficients)",
    lambda cfg: cfg.n_mfcc, _mfcc))


def encoder_inputs() -> tuple[str, ...]:
    """Names of the feature types stored by `mgr_tf.ingest --encoder NAME` (the `--encoder` choices)."""
    return tuple(name for name, spec in FEATURE_TYPES.items() if spec.stored)
