"""Cutting a track's clip from its audio file, or the `Problem` that explains why it has none.

`decode_track` and `cut_clip` turn an audio file into the clip of an ingest `Track`; they never raise for
bad files, so one file cannot stop a run.
"""

from __future__ import annotations

import numpy as np

from mgr_tf.audio.tracks import IngestConfig, Problem, Track
from mgr_tf.core.config import FeatureConfig
from mgr_tf.features.decode import load_audio, shortest_seconds, silent, too_short


def decode_track(track: Track, cfg: IngestConfig, fcfg: FeatureConfig):
    """Decodes a track's audio and cuts its clip; never raises for bad files.

    Args:
        track: the track.
        cfg: conversion settings (clip mode, minimum length, silence level).
        fcfg: feature settings (sample rate, clip length).

    Returns:
        (clip float32 waveform, None) or (None, Problem).
    """
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
        short = too_short(n, sr, shortest_seconds(fcfg.clip_seconds, cfg.min_seconds),
                          "use --clip pad or --min-seconds")
        if cfg.clip == "pad":
            clip = np.pad(audio, (0, length - n))
        elif short is None:
            clip = audio
        else:
            return None, Problem(track.source, "too short", short)
    else:
        start = 0 if cfg.clip == "first" else (n - length) // 2
        clip = audio[start:start + length]
    quiet = silent(float(np.max(np.abs(clip))) if clip.size else 0.0, cfg.silence_db)
    if quiet is not None:
        return None, Problem(track.source, "silent", quiet)
    return np.ascontiguousarray(clip, np.float32), None

