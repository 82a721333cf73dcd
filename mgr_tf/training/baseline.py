"""The summary-statistics baseline trained beside every run, on the same split, so no report hides a loss.

It is `--model summary` (per-band statistics -> standardisation -> linear head, see
`mgr_tf.models.summary`) trained with the settings below on whole clips; its metrics go into the run's
report.json under "baseline" and into report.md beside the model's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mgr_tf.config import DataConfig

BASELINE_FAMILY = "summary"
# A linear model on a few hundred standardised statistics: a higher learning rate and more (cheap) epochs
# than the deep models; L2 on the head keeps it close to a regularised logistic regression.
BASELINE_MODEL = {"dropout": 0.0, "l2": 1e-3}
BASELINE_TRAIN = {"epochs": 60, "learning_rate": 1e-2, "patience": 15, "lr_patience": 5}
BASELINE_BATCH_SIZE = 32


def baseline_configs(data: DataConfig, train=None):
    """(DataConfig, ModelConfig, TrainConfig) of the baseline for a run's data (same split, whole fused clips)."""
    from mgr_tf.models import ModelConfig
    from mgr_tf.training.run import TrainConfig

    # Whole clips, and all the stored bands (log-mel and chroma) whatever the run's feature type: the
    # classical clip summary, the strongest of these baselines on real data (Emotify: +0.04 over mel only).
    # Its own batch size too, so its number does not move with the main model's (musicnn defaults to 8).
    base_data = dataclasses.replace(data, features="fused", patch_frames=None, mixup=0.0, variable_length=True,
                                    batch_size=BASELINE_BATCH_SIZE)
    keep = {} if train is None else {k: getattr(train, k) for k in (
        "spearman_weight", "spearman_method", "spearman_strength", "loss_weights")}
    return base_data, ModelConfig(family=BASELINE_FAMILY, **BASELINE_MODEL), TrainConfig(**BASELINE_TRAIN, **keep)


def baseline_scores(data: DataConfig, run_dir: Path, train=None) -> dict:
    """Trains the baseline into `run_dir/baseline/` and returns {"metrics", "headline", "eval_split", ...}.

    Args:
        data: the run's data config (its split: seed, validation fraction, features).
        run_dir: the run folder.
        train: the run's TrainConfig (its emotion-loss settings are kept).
    """
    from mgr_tf.training.run import train as train_run

    base_data, model_config, train_config = baseline_configs(data, train)
    print("[train] baseline: summary statistics + linear head on the same split", flush=True)
    report = train_run(base_data, model_config, train_config, Path(run_dir) / "baseline", export_name=None,
                       command="(baseline of the run)", baseline=False)
    return {key: report[key] for key in ("metrics", "headline", "eval_split", "train_seconds", "epochs_run", "params")}
