"""The summary-statistics baseline trained beside every run, on the same split, so no report hides a loss.

It is `--model summary` (per-band statistics -> standardisation -> linear head, see `mgr_tf.models.summary`) on
whole clips. The statistics do not train, so its head is solved in closed form (`mgr_tf.training.convex`: L2
logistic regression at C = 0.03), the run's `--head` and `--head-c` apply; the Adam settings below serve
`--head gradient`; `mgr_tf.training.runner` trains it after the run's own model
and puts its metrics into the run's report.json under "baseline" and into report.md beside the model's.
"""

from __future__ import annotations

import dataclasses

from mgr_tf.core.config import TrainConfig
from mgr_tf.models import model_config
from mgr_tf.models.summary import STATISTICS
from mgr_tf.training.plan import Plan

BASELINE_FAMILY = "summary"
# A linear model on a few hundred standardised statistics: a higher learning rate and more (cheap) epochs
# than the deep models; L2 on the head keeps it close to a regularised logistic regression.
BASELINE_MODEL = {"dropout": 0.0, "l2": 1e-3}
BASELINE_TRAIN = TrainConfig(epochs=60, learning_rate=1e-2, patience=15, lr_patience=5)
BASELINE_BATCH_SIZE = 32
# The blend's partner (`wide_plan`): every statistic the summary family computes, the baseline's two among them.
WIDE_STATISTICS = STATISTICS
WIDE_DIR = "wide"


def is_baseline(plan: Plan) -> bool:
    """True for the summary-statistics baseline itself (which needs no baseline beside it)."""
    return plan.model.family == BASELINE_FAMILY


def baseline_plan(plan: Plan) -> Plan:
    """The baseline's plan for a run: the same split and regression loss, whole clips of every stored band,
    in `run_dir/baseline/`, neither exported nor with a baseline of its own.

    Whole clips, and all the stored bands (log-mel and chroma) whatever the run's feature type: the classical
    clip summary, the strongest of these baselines on real data (Emotify: +0.04 over mel only). Its own batch
    size too, so its number does not move with the main model's (musicnn defaults to 8).
    """
    data = dataclasses.replace(plan.data, features="fused", patch_frames=None, mixup=0.0, variable_length=True,
                               batch_size=BASELINE_BATCH_SIZE)
    return dataclasses.replace(plan, data=data, model=model_config(BASELINE_FAMILY, **BASELINE_MODEL),
                               train=BASELINE_TRAIN, run_dir=plan.run_dir / "baseline", export_name=None,
                               command="(baseline of the run)", baseline=False)


def wide_plan(plan: Plan) -> Plan:
    """The statistics model a from-scratch genre model is blended with (`mgr_tf.training.blend`), in `run_dir/wide/`.

    The baseline's plan with every per-band statistic (`WIDE_STATISTICS`: mean, std, min, max and the standard
    deviation of the frame-to-frame differences, 700 features on the fused arrays) instead of mean and std: a
    superset of the baseline's features, fitted the same way, so the blend's linear part starts where the
    baseline stands. Richer per-clip statistics are the classical set (the FMA paper, Defferrard et al., ISMIR
    2017, summarises each feature by seven moments and order statistics). Measured in docs/results.md: with the
    convex head at C = 0.03 it beat mean + std on the four synthetic corpora and on Emotify (400 and 80 clips).
    """
    base = baseline_plan(plan)
    model = model_config(BASELINE_FAMILY, **BASELINE_MODEL, summary_stats=WIDE_STATISTICS)
    return dataclasses.replace(base, model=model, run_dir=plan.run_dir / WIDE_DIR, command="(wide statistics of the run)")
