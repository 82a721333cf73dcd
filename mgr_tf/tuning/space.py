"""The search space of a study: the settings a model trains with and the keras-tuner hyperparameters behind them.

A `Setting` is what one model is trained with (task weights, or learned ones, and the searched values);
`declare_hyperparameters` declares a study's space on a `keras_tuner.HyperParameters` and returns the
setting of its values, so a trial and a results row always map to the same configs (`setting_configs`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mgr_tf.core.config import ModelConfig, RegressionConfig, TrainConfig
from mgr_tf.core.published import EMOTIONS, PUBLISHED_WEIGHTS
from mgr_tf.tuning.study import SEARCHABLE, SIMPLEX_U_RANGE, Range, Study


@dataclass(frozen=True)
class Setting:
    """What one model is trained with: the task weights (or learned ones) and the searched values.

    Args:
        weights: one weight per target of the study (`Study.targets`, in order); ignored when `learned`.
        learned: learn the weights (uncertainty weighting) instead.
        values: learning_rate / dropout / spearman_weight values in effect.
    """

    weights: tuple[float, ...]
    learned: bool = False
    values: tuple[tuple[str, float], ...] = ()


def _base_value(study: Study, key: str) -> float:
    owner = {"model": study.model_config, "train": study.train_config,
             "regression": study.regression_config}[SEARCHABLE[key]]
    return float(getattr(owner, key))


def _default(study: Study, key: str, r: Range) -> float:
    if r.default is not None:
        return r.default
    base = _base_value(study, key)
    if r.min <= base <= r.max:
        return base
    return math.sqrt(r.min * r.max) if r.sampling == "log" else (r.min + r.max) / 2


def weights_from_values(study: Study, values: dict) -> tuple[float, ...]:
    """The task weights that a trial's hyperparameter values stand for (see `mgr_tf.tuning.study`).

    Args:
        study: the study.
        values: the trial's hyperparameter values.
    """
    if study.weights.type == "simplex":
        e = [-math.log(float(values[f"u_{name}"])) for name in study.targets]
        return tuple(simplex_total(study) * x / sum(e) for x in e)
    return tuple(float(values[f"w_{name}"]) for name in study.targets)


def simplex_total(study: Study) -> float:
    """The sum of the weights on the simplex: the study's total, else the number of targets (equal weights 1)."""
    return study.weights.total if study.weights.total is not None else float(len(study.targets))


def declare_hyperparameters(study: Study, hp) -> Setting:
    """Declares the study's hyperparameters on `hp` and returns the setting they give.

    Args:
        study: the study.
        hp: a `keras_tuner.HyperParameters`.
    """
    if study.weights.type == "simplex":
        lo, hi = SIMPLEX_U_RANGE
        for name in study.targets:
            hp.Float(f"u_{name}", lo, hi, default=0.5)  # equal u's = equal weights
    else:
        for name in study.targets:
            lo, hi = study.weights.range_of(name)
            hp.Float(f"w_{name}", lo, hi, default=min(max(1.0, lo), hi))
    values = []
    for key, r in study.space:
        values.append((key, hp.Float(key, r.min, r.max, sampling=r.sampling, default=_default(study, key, r))))
    return Setting(weights_from_values(study, hp.values), False, tuple(values))


def reference_settings(study: Study) -> dict[str, Setting]:
    """The fixed reference rows: equal and learned weights, and report 2's published (1.5, 0.8, 0.8) when the
    targets are the published ones; other values at their defaults.

    Args:
        study: the study.
    """
    values = tuple((key, _default(study, key, r)) for key, r in study.space)
    equal = tuple(1.0 for _ in study.targets)
    rows = {"equal": Setting(equal, False, values)}
    if set(study.targets) == set(EMOTIONS):
        rows["published"] = Setting(tuple(float(PUBLISHED_WEIGHTS[t]) for t in study.targets), False, values)
    rows["learned"] = Setting(equal, True, values)
    return rows


def setting_configs(study: Study, setting: Setting) -> tuple[ModelConfig, TrainConfig, RegressionConfig]:
    """The (ModelConfig, TrainConfig, RegressionConfig) a setting trains with: the study's configs with its values.

    Args:
        study: the study.
        setting: the weights and searched values.
    """
    values = dict(setting.values)

    def of(kind: str) -> dict:
        return {k: v for k, v in values.items() if SEARCHABLE[k] == kind}

    model_cfg = dataclasses.replace(study.model_config, **of("model"))
    train_cfg = dataclasses.replace(study.train_config, **of("train"))
    regression = dataclasses.replace(study.regression_config, loss_weights=dict(zip(study.targets, setting.weights)),
                                     learned_weights=setting.learned, **of("regression"))
    return model_cfg, train_cfg, regression


def row_setting(study: Study, row: dict) -> Setting:
    """The setting of a results row (trial or reference).

    Args:
        study: the study.
        row: the row (weights as w_<target>, searched values under their names).
    """
    return Setting(tuple(float(row[f"w_{t}"]) for t in study.targets), bool(row.get("learned")),
                   tuple((k, float(row[k])) for k, _ in study.space))
