"""The summary-statistics baseline: per-band statistics pooled over time, standardised, then the task's head.

With the task's head (dropout + one dense softmax / sigmoid layer) this is a linear model on clip
summaries, the classical baseline of music classification (the FMA paper, Defferrard et al., ISMIR 2017,
trains SVMs and logistic regression on such statistics). It trains in seconds, exports and serves like the
other families, and every training report shows its score on the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

from mgr_tf.core.lazy import keras
from mgr_tf.models.registry import Backbone

# The statistics `mgr_tf.models.layers.SummaryStatistics` computes.
STATISTICS = ("mean", "std", "min", "max", "delta_std")
STATISTICS_LAYER = "statistics"


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


def build_summary_backbone(config, x, *, frames: int):
    """Statistics of the normalised, masked input, standardised over the training clips (`embedding_norm`,
    adapted by training on the statistics of the training split, `mgr_tf.training.frozen`).

    Args:
        config: the model config (summary_stats).
        x: the normalised (batch, time, bands) tensor, carrying the padding mask.
        frames: unused: any length works.
    """
    del frames
    from mgr_tf.models.layers import SummaryStatistics  # TensorFlow on demand

    x = SummaryStatistics(config.summary_stats, name=STATISTICS_LAYER)(x)
    return keras.layers.Normalization(axis=-1, name="embedding_norm")(x)


BACKBONE = Backbone("summary", "baseline: per-band statistics over time, standardised, linear head",
                    SummaryOptions, build_summary_backbone, variable_length=True, fixed_output=STATISTICS_LAYER)
