"""Clips: cutting them from audio files, and their features as the dataset stores them.

`clip_features` is the one place where a waveform becomes the two arrays of the layout (shared
reference, section 1): the full fused features (`features.fused_features`: log-mel + chroma,
(frames, 140)) and their beat-synchronous version (`features.beat_sync`). The converter
(`mgr_tf.ingest`), the synthetic corpus (`mgr_tf.synth`, several clips per call through
`batch_clip_features`) and `mgr_tf.predict` (audio into a model without an in-graph feature layer)
all call it, so a clip gives the same bytes whichever of them computed it.

`decode_track` and `cut_clip` turn an audio file into the clip of an ingest `Track`, or into the
`Problem` that explains why it has none; they never raise for bad files.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from mgr_tf.audio.tracks import SHORT_TOLERANCE_SECONDS, IngestConfig, Problem, Track
from mgr_tf.config import FeatureConfig


class NonFiniteFeatures(ValueError):
    """The features of a clip hold NaN or infinite values (the clip is unusable)."""


class ClipFeatures(NamedTuple):
    """The two arrays of one clip, time first.

    Args:
        full: fused features, (frames, bands) float32.
        beat: beat-synchronous features, (beats, bands) float32; None when not asked for.
    """

    full: np.ndarray
    beat: np.ndarray | None


@functools.lru_cache(maxsize=8)
def _compiled_fused(cfg: FeatureConfig, batched: bool):
    """`features.fused_features` compiled once per settings, for (samples,) or (clips, samples) input.

    Compiled rather than eager: the compiled graph is what the dataset converter has always used,
    and eager execution rounds differently in the last bits.
    """
    import tensorflow as tf

    from mgr_tf.audio.features import fused_features

    shape = [None, None] if batched else [None]
    return tf.function(lambda x: fused_features(x, cfg), input_signature=[tf.TensorSpec(shape, tf.float32)],
                       autograph=False)


def _with_beat(full: np.ndarray, cfg: FeatureConfig, beat: bool) -> ClipFeatures:
    from mgr_tf.audio.features import beat_sync

    full = np.asarray(full, np.float32)
    if not np.all(np.isfinite(full)):
        raise NonFiniteFeatures("features hold non-finite values")
    return ClipFeatures(full, beat_sync(full, cfg=cfg) if beat else None)


def clip_features(waveform, cfg: FeatureConfig = FeatureConfig(), *, beat: bool = True) -> ClipFeatures:
    """The full and beat-synchronous fused features of one clip.

    Args:
        waveform: mono float waveform (samples,) at `cfg.sample_rate`.
        cfg: feature settings.
        beat: also compute the beat-synchronous array (beat tracking costs about as much as the
            features themselves).

    Returns:
        `ClipFeatures(full, beat)`: (frames, bands) and (beats, bands) float32 arrays.

    Raises:
        NonFiniteFeatures: (a ValueError) the features hold NaN or infinite values.
    """
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono waveform (samples,), got shape {waveform.shape}")
    return _with_beat(_compiled_fused(cfg, False)(waveform).numpy(), cfg, beat)


def batch_clip_features(waveforms, cfg: FeatureConfig = FeatureConfig(), *, beat: bool = True
                        ) -> list[ClipFeatures]:
    """`clip_features` of several clips of equal length in one feature call.

    The features of each clip are computed by the same function as `clip_features` (the batch is
    mapped clip by clip in the graph), so the arrays are identical; the batch only saves calls.

    Args:
        waveforms: (clips, samples) float waveforms.
        cfg: feature settings.
        beat: also compute the beat-synchronous arrays.
    """
    waveforms = np.asarray(waveforms, np.float32)
    if waveforms.ndim != 2:
        raise ValueError(f"expected (clips, samples) waveforms, got shape {waveforms.shape}")
    fused = _compiled_fused(cfg, True)(waveforms).numpy()
    return [_with_beat(full, cfg, beat) for full in fused]


def decode_track(track: Track, cfg: IngestConfig, fcfg: FeatureConfig):
    """Decodes a track's audio and cuts its clip; never raises for bad files.

    Args:
        track: the track.
        cfg: conversion settings (clip mode, minimum length, silence level).
        fcfg: feature settings (sample rate, clip length).

    Returns:
        (clip float32 waveform, None) or (None, Problem).
    """
    from mgr_tf.audio.features import load_audio

    try:
        audio = load_audio(track.path, fcfg)
    except FileNotFoundError:
        return None, Problem(track.source, "missing", "audio file not found")
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1]
        kind = "empty" if ("empty file" in reason or "no samples" in reason) else "corrupt"
        return None, Problem(track.source, kind, reason)
    except Exception as exc:  # a decoder failing in an unexpected way must not stop the run
        return None, Problem(track.source, "corrupt", f"{type(exc).__name__}: {exc}")
    return cut_clip(audio, track, cfg, fcfg)


def cut_clip(audio: np.ndarray, track: Track, cfg: IngestConfig, fcfg: FeatureConfig):
    """The clip of a decoded file by the clip mode, or the reason it is unusable.

    Args:
        audio: mono waveform at `fcfg.sample_rate`.
        track: the track (for messages).
        cfg: clip mode, minimum length and silence level.
        fcfg: sample rate and clip length.

    Returns:
        (clip, None) or (None, Problem).
    """
    sr = fcfg.sample_rate
    length = int(round(fcfg.clip_seconds * sr))
    n = audio.shape[0]
    if n < length:
        min_seconds = cfg.min_seconds
        if min_seconds is None:
            min_seconds = max(fcfg.clip_seconds - SHORT_TOLERANCE_SECONDS, fcfg.clip_seconds / 2)
        min_len = int(round(min_seconds * sr))
        if cfg.clip == "pad":
            clip = np.pad(audio, (0, length - n))
        elif n >= min_len:
            clip = audio
        else:
            return None, Problem(track.source, "too short",
                                 f"too short ({n / sr:.1f} s < {min_len / sr:g} s; use --clip pad or --min-seconds)")
    else:
        start = 0 if cfg.clip == "first" else (n - length) // 2
        clip = audio[start:start + length]
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    if peak <= 10.0 ** (cfg.silence_db / 20.0):
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
        return None, Problem(track.source, "silent", f"silent clip (peak {level} <= {cfg.silence_db:g} dBFS)")
    return np.ascontiguousarray(clip, np.float32), None

