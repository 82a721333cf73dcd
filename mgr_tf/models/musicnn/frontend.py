"""musicnn's 16 kHz log-mel front end in TensorFlow ops, and audio at its rate.

Front end (`musicnn_frontend`), as the package's ``extractor.batch_data``: 16 kHz mono, STFT with
n_fft 512 / hop 256 (periodic Hann, centred frames with reflect padding, librosa's default when the
models were trained), power spectrum, 96-band Slaney mel filter bank (``librosa.filters.mel`` defaults:
htk=False, norm="slaney", 0 .. 8 kHz), the mel power rounded to float16 (the package stores it so), then
``log10(1 + 10000 x)``, cut into non-overlapping 187-frame (3 s) patches, an incomplete last patch dropped.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import keras
import librosa
import numpy as np
import tensorflow as tf

from mgr_tf.models.musicnn.presets import FFT_HOP, FFT_SIZE, LOG_SCALE, N_MELS, PATCH_FRAMES, SAMPLE_RATE


@functools.lru_cache(maxsize=1)
def _mel_matrix() -> np.ndarray:
    """(257, 96) Slaney mel filter bank of ``librosa.filters.mel`` defaults at 16 kHz / n_fft 512."""
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
    if sample_rate == SAMPLE_RATE:
        return np.asarray(waveform, np.float32)
    return librosa.resample(np.asarray(waveform, np.float32), orig_sr=sample_rate, target_sr=SAMPLE_RATE)
