"""The summary-statistics baseline: per-band statistics pooled over time, standardised, then the task's head.

With the task's head (dropout + one dense softmax / sigmoid layer) this is a linear model on clip
summaries, the classical baseline of music classification (the FMA paper, Defferrard et al., ISMIR 2017,
trains SVMs and logistic regression on such statistics). It trains in seconds, exports and serves like the
other families, and every training report shows its score on the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from mgr_tf.models.layers import PACKAGE
from mgr_tf.models.registry import Backbone

STATISTICS = ("mean", "std", "min", "max", "delta_std")


@dataclass(frozen=True)
class SummaryOptions:
    """Options of the summary-statistics baseline.

    Args:
        summary_stats: per-band statistics over the clip's real frames, concatenated: any of mean, std,
            min, max, delta_std (standard deviation of the frame-to-frame differences).
    """

    summary_stats: tuple[str, ...] = ("mean", "std")

    def __post_init__(self):
        unknown = sorted(set(self.summary_stats) - set(STATISTICS))
        if not self.summary_stats or unknown:
            raise ValueError(f"ModelConfig: summary_stats must be some of {STATISTICS}, got {self.summary_stats}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class SummaryStatistics(keras.layers.Layer):
    """Per-band statistics over the real (unmasked) frames: (batch, time, bands) -> (batch, bands * stats).

    Args:
        stats: names from `STATISTICS`, in output order.
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


def build_summary_backbone(config, x, *, frames: int):
    """Statistics of the normalised, masked input, standardised by batch normalisation (no scale/shift).

    Args:
        config: the model config (summary_stats).
        x: the normalised (batch, time, bands) tensor, carrying the padding mask.
        frames: unused: any length works.
    """
    del frames
    x = SummaryStatistics(config.summary_stats, name="statistics")(x)
    # Standardises each statistic over the training clips (moving averages at inference).
    return keras.layers.BatchNormalization(center=False, scale=False, momentum=0.9, name="standardise")(x)


BACKBONE = Backbone("summary", "baseline: per-band statistics over time, standardised, linear head",
                    SummaryOptions, build_summary_backbone, variable_length=True)
