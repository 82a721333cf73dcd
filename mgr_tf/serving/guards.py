"""Input checks inside the serving signatures: a request that cannot be a spectrogram or a recording is refused
with an error status instead of being answered with a genre.

The checks are graph ops (`tf.debugging.Assert`), so they hold wherever the SavedModel runs: a refused call raises
`InvalidArgumentError` in Python and TF Serving answers HTTP 400 (gRPC INVALID_ARGUMENT) with the message, e.g.
``spectrogram: NaN or Inf values``. They run before the model, and pass a valid input through unchanged.

Refused spectrograms (batch, time, bands): no frames, NaN or Inf values, values beyond +-`MAX_ABS_VALUE` (no
feature type stores such values), or an example whose every frame is zero (all padding, nothing to classify).
Refused waveforms (batch, samples): fewer samples than the signature's minimum (one second by default: a second
gives a few dozen frames), NaN or Inf samples, samples beyond +-`MAX_WAVEFORM` (float audio lies in [-1, 1]; PCM
integers sent as floats are 32768 times too loud), or a silent example (peak at or below `SILENCE_DB` dBFS, the
rule ingest and predict apply to files).
"""

from __future__ import annotations

import tensorflow as tf

from mgr_tf.data.layout import MAX_ABS_VALUE
from mgr_tf.features.decode import SILENCE_DB

MAX_WAVEFORM = 16.0  # 24 dB above full scale: no decoded recording comes near it
MIN_WAVEFORM_SECONDS = 1.0


def _checks(tensor: tf.Tensor, conditions: list[tuple[tf.Tensor, str]]) -> tf.Tensor:
    """`tensor`, once every condition holds; the conditions are checked in order, so the first that fails is the
    one reported."""
    previous: list = []
    for condition, message in conditions:
        with tf.control_dependencies(previous):
            previous = [tf.debugging.Assert(condition, [message])]
    with tf.control_dependencies(previous):
        return tf.identity(tensor)


def checked_spectrogram(spectrogram: tf.Tensor, name: str = "spectrogram") -> tf.Tensor:
    """`spectrogram` (batch, time, bands), or an InvalidArgumentError saying what is wrong with it.

    Args:
        spectrogram: the signature's input.
        name: the input's name in the messages.
    """
    x = tf.convert_to_tensor(spectrogram)
    magnitude = tf.abs(x)
    return _checks(x, [
        (tf.shape(x)[1] > 0, f"{name}: no frames (the time axis has length 0)"),
        (tf.reduce_all(tf.math.is_finite(x)), f"{name}: NaN or Inf values"),
        (tf.reduce_all(magnitude <= MAX_ABS_VALUE), f"{name}: values beyond +-{MAX_ABS_VALUE:g}, which no stored "
                                                    "feature reaches (garbage or another scale)"),
        (tf.reduce_all(tf.reduce_any(magnitude > 0, axis=[1, 2])),
         f"{name}: an example whose every frame is zero (all padding: nothing to classify)"),
    ])


def checked_waveform(waveform: tf.Tensor, sample_rate: int, min_seconds: float = MIN_WAVEFORM_SECONDS,
                     silence_db: float = SILENCE_DB) -> tf.Tensor:
    """`waveform` (batch, samples), or an InvalidArgumentError saying what is wrong with it.

    Args:
        waveform: the signature's input, mono float audio at `sample_rate`.
        sample_rate: the signature's rate (for the shortest length).
        min_seconds: the shortest recording accepted.
        silence_db: an example whose peak is at or below this level (dBFS) is refused as silent.
    """
    x = tf.convert_to_tensor(waveform)
    min_samples = max(1, int(round(min_seconds * sample_rate)))
    peak = tf.reduce_max(tf.abs(x), axis=1)
    return _checks(x, [
        (tf.shape(x)[1] >= min_samples, f"waveform: too short (fewer than {min_samples} samples, "
                                        f"{min_seconds:g} s at {sample_rate} Hz)"),
        (tf.reduce_all(tf.math.is_finite(x)), "waveform: NaN or Inf samples"),
        (tf.reduce_all(peak <= MAX_WAVEFORM), f"waveform: samples beyond +-{MAX_WAVEFORM:g} (float audio lies in "
                                              "[-1, 1]; integer PCM must be scaled)"),
        (tf.reduce_all(peak > 10.0 ** (silence_db / 20.0)), f"waveform: a silent example (peak at or below "
                                                            f"{silence_db:g} dBFS)"),
    ])
