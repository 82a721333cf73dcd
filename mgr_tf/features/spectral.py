"""Spectrogram features in TensorFlow ops, equal to librosa's, plus beat synchronisation.

The published data (shared reference, section 1) stacks a 128-band log-power mel spectrogram and a
12-bin chromagram ("fused", 140 rows). Everything here follows librosa's definitions so that
features computed in a served graph match the arrays of the published dataset:

* STFT: centred frames (zero padding of ``n_fft // 2`` on both sides), periodic Hann window,
  ``1 + len // hop`` frames, power spectrogram ``|X|^2``.
* Mel: Slaney mel scale with area normalisation (``librosa.filters.mel`` defaults), then
  ``power_to_db(ref=1.0, amin=1e-10, top_db=80)`` with the top-dB floor taken per example.
* Chroma: ``librosa.filters.chroma`` (tuning 0) on the power spectrum, each frame divided by its
  maximum (``norm=inf``); silent frames stay 0.
* MFCC: orthonormal DCT-II of the log-mel, as ``librosa.feature.mfcc``.

The filter banks are built once per `FeatureConfig` with librosa and kept as constants, so the
graph needs only TensorFlow ops (works in ``tf.data``, ``tf.function``, XLA and SavedModels).
Beat synchronisation (``beat_sync``) runs in NumPy/librosa at dataset-conversion time.
"""

from __future__ import annotations

import functools

import keras
import librosa
import numpy as np
import tensorflow as tf

from mgr_tf.core.config import FeatureConfig
from mgr_tf.features.decode import load_audio  # noqa: F401  (its home before decode; old imports keep working)
from mgr_tf.features.types import get_feature_type

_AMIN = 1e-10
# Fallback segment length for audio without detectable beats: one beat at 120 BPM.
_FALLBACK_BPM = 120.0


@functools.lru_cache(maxsize=8)
def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """The mel filter bank of ``librosa.filters.mel`` (Slaney scale and norm), (freq_bins, n_mels).

    Args:
        cfg: feature settings (sample rate, FFT size, mel bands, fmin, fmax).
    """
    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                             fmax=cfg.fmax, htk=False, norm="slaney", dtype=np.float32)
    return np.ascontiguousarray(fb.T)


@functools.lru_cache(maxsize=8)
def chroma_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """The chroma filter bank of ``librosa.filters.chroma`` with tuning 0, (freq_bins, n_chroma).

    Args:
        cfg: feature settings (sample rate, FFT size, chroma bins).
    """
    fb = librosa.filters.chroma(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_chroma=cfg.n_chroma,
                                tuning=0.0, dtype=np.float32)
    return np.ascontiguousarray(fb.T)


def num_frames(num_samples: int, cfg: FeatureConfig = FeatureConfig()) -> int:
    """Frames of a centred STFT of ``num_samples`` samples (librosa's count).

    Args:
        num_samples: waveform length.
        cfg: feature settings (hop length).
    """
    return 1 + num_samples // cfg.hop_length


def power_spectrogram(waveform, cfg: FeatureConfig = FeatureConfig()) -> tf.Tensor:
    """Power spectrogram ``|STFT|^2`` with librosa's centred, zero-padded framing.

    Args:
        waveform: float tensor (samples,) or (batch, samples).
        cfg: feature settings.

    Returns:
        float32 tensor (..., frames, 1 + n_fft // 2).
    """
    x = tf.convert_to_tensor(waveform, tf.float32)
    pad = cfg.n_fft // 2
    paddings = [[0, 0]] * (x.shape.rank - 1) + [[pad, pad]]
    x = tf.pad(x, paddings)
    stft = tf.signal.stft(x, frame_length=cfg.n_fft, frame_step=cfg.hop_length, fft_length=cfg.n_fft,
                          window_fn=functools.partial(tf.signal.hann_window, periodic=True),
                          pad_end=False)
    return tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))


def power_to_db(power, top_db: float | None = 80.0) -> tf.Tensor:
    """``librosa.power_to_db(ref=1.0, amin=1e-10, top_db=top_db)`` with the floor per example.

    Args:
        power: float tensor (..., frames, bands); the last two axes form one example.
        top_db: dynamic range kept below each example's maximum; None keeps everything.
    """
    db = 10.0 * tf.math.log(tf.maximum(power, _AMIN)) / tf.math.log(10.0)
    if top_db is not None:
        peak = tf.reduce_max(db, axis=[-2, -1], keepdims=True)
        db = tf.maximum(db, peak - top_db)
    return db


def _mel_from_power(power, cfg: FeatureConfig) -> tf.Tensor:
    fb = tf.constant(mel_filterbank(cfg))
    return power_to_db(tf.linalg.matmul(power, fb), cfg.top_db)


def _chroma_from_power(power, cfg: FeatureConfig) -> tf.Tensor:
    fb = tf.constant(chroma_filterbank(cfg))
    raw = tf.linalg.matmul(power, fb)
    peak = tf.reduce_max(tf.abs(raw), axis=-1, keepdims=True)
    # librosa.util.normalize leaves frames whose norm is below the dtype's tiny value undivided.
    tiny = np.finfo(np.float32).tiny
    return raw / tf.where(peak < tiny, tf.ones_like(peak), peak)


def log_mel(waveform, cfg: FeatureConfig = FeatureConfig()) -> tf.Tensor:
    """Log-power mel spectrogram in dB, (..., frames, n_mels).

    Args:
        waveform: float tensor (samples,) or (batch, samples).
        cfg: feature settings.
    """
    return _mel_from_power(power_spectrogram(waveform, cfg), cfg)


def chroma(waveform, cfg: FeatureConfig = FeatureConfig()) -> tf.Tensor:
    """Chromagram as ``librosa.feature.chroma_stft(tuning=0)``, (..., frames, n_chroma).

    Args:
        waveform: float tensor (samples,) or (batch, samples).
        cfg: feature settings.
    """
    return _chroma_from_power(power_spectrogram(waveform, cfg), cfg)


def mfcc(waveform, cfg: FeatureConfig = FeatureConfig(), n_mfcc: int = 20) -> tf.Tensor:
    """MFCCs as ``librosa.feature.mfcc`` (orthonormal DCT-II of the log-mel), (..., frames, n_mfcc).

    Args:
        waveform: float tensor (samples,) or (batch, samples).
        cfg: feature settings.
        n_mfcc: coefficients kept.
    """
    return tf.signal.dct(log_mel(waveform, cfg), type=2, norm="ortho")[..., :n_mfcc]


def fused_features(waveform, cfg: FeatureConfig = FeatureConfig()) -> tf.Tensor:
    """Log-mel stacked on chroma, the "fused" features of the dataset: (..., frames, 140).

    Rows 0..n_mels-1 are log-mel dB, the remaining n_chroma rows chroma (C first). The STFT is
    computed once and shared by both.

    Args:
        waveform: float tensor (samples,) or (batch, samples).
        cfg: feature settings.
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    if waveform.shape.rank == 2:
        # One clip at a time: a whole batch of 30 s spectrograms (complex STFT ~10 MB a clip) thrashes
        # the caches, and measured 2-3x slower per clip on 2 CPU cores than this loop.
        return tf.map_fn(lambda clip: _fused_one(clip, cfg), waveform, parallel_iterations=2,
                         fn_output_signature=tf.TensorSpec([None, cfg.num_bands], tf.float32))
    return _fused_one(waveform, cfg)


def _fused_one(waveform: tf.Tensor, cfg: FeatureConfig) -> tf.Tensor:
    power = power_spectrogram(waveform, cfg)
    return tf.concat([_mel_from_power(power, cfg), _chroma_from_power(power, cfg)], axis=-1)


@keras.saving.register_keras_serializable(package="mgr_tf")
class AudioFeatures(keras.layers.Layer):
    """Maps waveforms (batch, samples) to features (batch, frames, bands) inside a model.

    Used in front of a spectrogram model for a raw-audio serving signature, so that the served
    graph computes exactly the training features.

    Args:
        bands: the feature type (a name registered in `mgr_tf.features.types`: fused, mel, chroma, ...).
        sample_rate, n_fft, hop_length, n_mels, n_chroma, fmin, fmax, top_db, n_mfcc: the fields of
            `FeatureConfig`.
        **kwargs: base layer arguments (name, dtype, ...).
    """

    def __init__(self, bands: str = "fused", sample_rate: int = 22050, n_fft: int = 2048,
                 hop_length: int = 512, n_mels: int = 128, n_chroma: int = 12, fmin: float = 0.0,
                 fmax: float | None = None, top_db: float | None = 80.0, n_mfcc: int = 20, **kwargs):
        super().__init__(**kwargs)
        get_feature_type(bands)  # ValueError naming the registered feature types
        self.bands = bands
        self.feature_config = FeatureConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                            n_mels=n_mels, n_chroma=n_chroma, fmin=fmin, fmax=fmax,
                                            top_db=top_db, n_mfcc=n_mfcc)
        self.built = True  # no weights: nothing to build

    @classmethod
    def from_feature_config(cls, cfg: FeatureConfig, bands: str = "fused", **kwargs) -> "AudioFeatures":
        """Builds the layer from a `FeatureConfig`.

        Args:
            cfg: feature settings.
            bands: band selection.
            **kwargs: base layer arguments.
        """
        return cls(bands=bands, sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                   n_mels=cfg.n_mels, n_chroma=cfg.n_chroma, fmin=cfg.fmin, fmax=cfg.fmax,
                   top_db=cfg.top_db, n_mfcc=cfg.n_mfcc, **kwargs)

    def call(self, waveform):
        cfg = self.feature_config
        return get_feature_type(self.bands).derive(fused_features(waveform, cfg), cfg)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else num_frames(samples, self.feature_config)
        return (*input_shape[:-1], frames, get_feature_type(self.bands).bands(self.feature_config))

    def get_config(self):
        cfg = self.feature_config
        config = super().get_config()
        config.update(bands=self.bands, sample_rate=cfg.sample_rate, n_fft=cfg.n_fft,
                      hop_length=cfg.hop_length, n_mels=cfg.n_mels, n_chroma=cfg.n_chroma, fmin=cfg.fmin,
                      fmax=cfg.fmax, top_db=cfg.top_db, n_mfcc=cfg.n_mfcc)
        return config


# ----------------------------------------------------------------------------------------------
# Beat synchronisation (NumPy / librosa; used when writing the *_beat sub-datasets).


def onset_envelope(log_mel_db: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Onset strength from a log-mel spectrogram, as ``librosa.onset.onset_strength(S=...)``.

    Args:
        log_mel_db: (time, n_mels) log-mel in dB.
        cfg: feature settings (sample rate, hop length, FFT size).
    """
    return librosa.onset.onset_strength(S=np.asarray(log_mel_db, np.float32).T, sr=cfg.sample_rate,
                                        hop_length=cfg.hop_length, n_fft=cfg.n_fft)


def beat_frames(onset_env: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Beat positions (frame indices) by ``librosa.beat.beat_track`` on an onset envelope.

    Falls back to fixed segments of one beat at 120 BPM when fewer than two beats are found
    (silence, drones, noise), so that every clip still gets a beat-synchronous array.

    Args:
        onset_env: (time,) onset strength.
        cfg: feature settings (sample rate, hop length).
    """
    onset_env = np.asarray(onset_env, np.float32)
    beats = np.empty(0, dtype=int)
    if onset_env.size and np.any(onset_env > 0):
        _, beats = librosa.beat.beat_track(onset_envelope=onset_env, sr=cfg.sample_rate,
                                           hop_length=cfg.hop_length)
        beats = np.asarray(beats, dtype=int)
    if beats.size < 2:
        step = max(1, int(round(60.0 / _FALLBACK_BPM * cfg.sample_rate / cfg.hop_length)))
        beats = np.arange(step, onset_env.size, step, dtype=int)
    return beats


def sync_to_beats(features: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Median of the frames between consecutive beats (``librosa.util.sync(aggregate=np.median)``).

    Segments are [0, b0), [b0, b1), ..., [bn, time): the clip's start and end count as boundaries.

    Args:
        features: (time, bands) array.
        beats: increasing frame indices.

    Returns:
        (segments, bands) float32 array.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be (time, bands), got shape {features.shape}")
    synced = librosa.util.sync(features.T, np.asarray(beats, dtype=int), aggregate=np.median, pad=True)
    return np.ascontiguousarray(synced.T, dtype=np.float32)


def beat_sync(features: np.ndarray, onset=None, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Beat-synchronous features: librosa beat tracking, then the median between beats.

    Args:
        features: (time, bands) array; when `onset` is None its first ``cfg.n_mels`` columns must
            be the log-mel (as in fused or mel features) and give the onset envelope.
        onset: None, an onset envelope (time,) or the waveform the features came from
            (any other length; its log-mel is computed to get the onset envelope).
        cfg: feature settings.

    Returns:
        (beats, bands) float32 array; about 60 rows for 30 s at 120 BPM.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be (time, bands), got shape {features.shape}")
    time = features.shape[0]
    if onset is None:
        if features.shape[1] < cfg.n_mels:
            raise ValueError(f"features have {features.shape[1]} bands: pass an onset envelope or the "
                             f"waveform, or features whose first {cfg.n_mels} bands are log-mel")
        env = onset_envelope(features[:, :cfg.n_mels], cfg)
    else:
        onset = np.asarray(onset, np.float32).reshape(-1)
        if onset.shape[0] == time:
            env = onset
        else:
            env = onset_envelope(log_mel(onset, cfg).numpy(), cfg)
    return sync_to_beats(features, beat_frames(env, cfg))
