"""A clip's features as the dataset stores them: the one place a waveform becomes the layout's two arrays.

`clip_features` computes the full fused features (`spectral.fused_features`: log-mel + chroma,
(frames, 140)) and their beat-synchronous version (`spectral.beat_sync`) of one clip. The converter
(`mgr_tf.ingest`), the synthetic corpus (several clips per call through `batch_clip_features`) and
`mgr_tf.predict` (audio into a model without an in-graph feature layer) all call it, so a clip gives the
same bytes whichever of them computed it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mgr_tf.core.config import FeatureConfig
from mgr_tf.features.spectral import beat_sync, fused_features


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
    shape = [None, None] if batched else [None]
    return tf.function(lambda x: fused_features(x, cfg), input_signature=[tf.TensorSpec(shape, tf.float32)],
                       autograph=False)


def _with_beat(full: np.ndarray, cfg: FeatureConfig, beat: bool) -> ClipFeatures:
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
