"""keras-tuner studies of the multitask loss weights: `python -m mgr_tf.tune tuning/<study>.json`.

A study is a small JSON file (see `tuning/README.md`) naming the model, the data and a search space over the
three task weights (valence, energy, danceability) and, optionally, the learning rate, dropout and the
Spearman weight of the emotion loss. Each trial builds and compiles its model with the same functions as
`mgr_tf.train` (`models.build_model`, `train.compile_for_task`, `train.extra_callbacks`), so there is no second
model or loss code. The objective is the mean validation Spearman correlation over the three targets: unlike
`val_loss`, it does not change scale with the weights being tuned.

Weights on the simplex: for each target a uniform hyperparameter u_t in [0.001, 0.999] is drawn and the
weights are w_t = total * e_t / sum(e) with e_t = -log(u_t). -log of a uniform variable is Exp(1)-distributed
and normalised independent Exp(1) draws are Dirichlet(1, 1, 1), i.e. uniform on the simplex, so random search
samples weight ratios uniformly while the weights always sum to `total` (3 = the scale of equal weights 1, 1, 1).

The run folder (tuning/runs/<study>/ by default) keeps the tuner state: rerunning the same command continues
the study (a larger --max-trials adds trials; finished trials are not re-run). It also holds the results table
(CSV and Markdown, best first, with reference rows for equal, published 1.5/0.8/0.8 and learned uncertainty
weights trained with the same budget), a plot of the objective against the weights, best.json and config.json.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mgr_tf.cli import UserError, quiet_tensorflow, run_cli
from mgr_tf.config import BAND_SLICES, DataConfig, from_dict, to_dict, write_json
from mgr_tf.genres import EMOTIONS

ORACLES = ("random", "bayesian", "hyperband")
OBJECTIVE = "val_mean_spearman"
SIMPLEX_U_RANGE = (0.001, 0.999)
HYPERBAND_FACTOR = 3
# Non-weight hyperparameters a study may search, and where their fixed value lives.
SEARCHABLE = {"learning_rate": "train", "dropout": "model", "spearman_weight": "train"}
STUDY_KEYS = ("name", "description", "model", "features", "beat", "data_dir", "oracle", "max_trials",
              "executions_per_trial", "epochs", "seed", "batch_size", "max_frames", "val_fraction",
              "search_space", "model_overrides", "train_overrides", "references")
# Set by the study itself, so an override would silently be ignored.
TRAIN_KEYS_OWNED = ("epochs", "loss_weights", "learned_weights", "init_from", "freeze_epochs",
                    "finetune_lr_factor", "overfit_batch")


# --------------------------------------------------------------------------------------------- study
@dataclass(frozen=True)
class Range:
    """A searched float hyperparameter.

    Args:
        min: lower bound.
        max: upper bound (>= min).
        sampling: "linear" or "log" (log needs min > 0).
        default: value used by the reference rows (and the tuner's default); None = the base value of the
            model/training config if it lies in the range, else the midpoint (geometric for log).
    """

    min: float
    max: float
    sampling: str = "linear"
    default: float | None = None


@dataclass(frozen=True)
class WeightSpace:
    """How the three task weights are searched.

    Args:
        type: "simplex" (Dirichlet-like, weights sum to `total`; see the module docstring) or "ranges"
            (each weight drawn independently from its own range).
        total: sum of the weights on the simplex.
        ranges: with type "ranges", (min, max) per target, in EMOTIONS order.
    """

    type: str = "simplex"
    total: float = 3.0
    ranges: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Study:
    """One keras-tuner study of the multitask weights (parsed from tuning/<study>.json).

    Args:
        name: study name; names the default run folder tuning/runs/<name>.
        description: free text.
        model: backbone family: lstm, cnn or ast.
        features: fused, mel or chroma.
        beat: use the beat-synchronous sub-dataset.
        data_dir: dataset root; None = the embedded synthetic corpus.
        oracle: random, bayesian or hyperband.
        max_trials: trials to run (hyperband: an upper bound on its own schedule).
        executions_per_trial: models trained per trial (the objective is their mean).
        epochs: epochs per trial (hyperband: the maximum per model).
        seed: seed of the oracle, the validation split and the model initialisation.
        batch_size: examples per batch.
        max_frames: pad/crop length; None = 1293 (full) or 129 (beat).
        val_fraction: share of the train split used for validation (the objective).
        weights: the weight search space.
        space: other searched hyperparameters: name -> Range (learning_rate, dropout, spearman_weight).
        model_config: the base `mgr_tf.models.ModelConfig` (family + model_overrides).
        train_config: the base `mgr_tf.train.TrainConfig` (train_overrides + epochs).
        references: train the reference rows (equal, published, learned weights).
    """

    name: str
    description: str
    model: str
    features: str
    beat: bool
    data_dir: str | None
    oracle: str
    max_trials: int
    executions_per_trial: int
    epochs: int
    seed: int
    batch_size: int
    max_frames: int | None
    val_fraction: float
    weights: WeightSpace
    space: tuple[tuple[str, Range], ...]
    model_config: Any
    train_config: Any
    references: bool = True

    def data_config(self, data_dir: str | None = None) -> DataConfig:
        """The DataConfig of the study (multitask), optionally with another root.

        Args:
            data_dir: overrides the study's data_dir when given.
        """
        return DataConfig(data_dir=data_dir if data_dir is not None else self.data_dir, task="multitask",
                          features=self.features, beat=self.beat, seed=self.seed, batch_size=self.batch_size,
                          max_frames=self.max_frames, variable_length=self.model == "lstm",
                          val_fraction=self.val_fraction)

    def to_json(self) -> dict:
        """The study as a JSON-ready dict (written to the run folder's config.json)."""
        return to_dict(self)


def _fail(path, key: str, message: str):
    raise UserError(f"{path}: {key}: {message}")


def _number(path, key: str, value, *, integer: bool = False, minimum: float | None = None,
            allow_none: bool = False):
    if value is None and allow_none:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        _fail(path, key, f"expected {'an integer' if integer else 'a number'}, got {json.dumps(value)}")
    if minimum is not None and value < minimum:
        _fail(path, key, f"must be >= {minimum}, got {value}")
    return value


def _parse_range(path, key: str, spec) -> Range | float:
    """A number (fixed value), [min, max] or {"min", "max", "sampling", "default"}."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec)
    if isinstance(spec, list):
        if len(spec) != 2:
            _fail(path, key, f"expected [min, max], got {json.dumps(spec)}")
        spec = {"min": spec[0], "max": spec[1]}
    if not isinstance(spec, dict):
        _fail(path, key, f"expected a number, [min, max] or an object with min/max, got {json.dumps(spec)}")
    unknown = sorted(set(spec) - {"min", "max", "sampling", "default"})
    if unknown:
        _fail(path, f"{key}.{unknown[0]}", "unknown key (allowed: min, max, sampling, default)")
    for part in ("min", "max"):
        if part not in spec:
            _fail(path, f"{key}.{part}", "missing")
        _number(path, f"{key}.{part}", spec[part])
    lo, hi = float(spec["min"]), float(spec["max"])
    if lo > hi:
        _fail(path, key, f"min ({lo:g}) > max ({hi:g})")
    if lo < 0:
        _fail(path, f"{key}.min", f"must be >= 0, got {lo:g}")
    sampling = spec.get("sampling", "linear")
    if sampling not in ("linear", "log"):
        _fail(path, f"{key}.sampling", f"must be linear or log, got {json.dumps(sampling)}")
    if sampling == "log" and lo <= 0:
        _fail(path, f"{key}.min", "log sampling needs min > 0")
    default = spec.get("default")
    if default is not None:
        _number(path, f"{key}.default", default)
        if not lo <= default <= hi:
            _fail(path, f"{key}.default", f"{default:g} lies outside [{lo:g}, {hi:g}]")
    return Range(lo, hi, sampling, None if default is None else float(default))


def _parse_weights(path, spec) -> WeightSpace:
    key = "search_space.weights"
    if not isinstance(spec, dict):
        _fail(path, key, f"expected an object, got {json.dumps(spec)}")
    kind = spec.get("type", "simplex")
    if kind == "simplex":
        unknown = sorted(set(spec) - {"type", "total"})
        if unknown:
            _fail(path, f"{key}.{unknown[0]}", "unknown key for type simplex (allowed: type, total)")
        total = _number(path, f"{key}.total", spec.get("total", 3.0))
        if total <= 0:
            _fail(path, f"{key}.total", f"must be > 0, got {total}")
        return WeightSpace("simplex", float(total))
    if kind == "ranges":
        unknown = sorted(set(spec) - {"type", *EMOTIONS})
        if unknown:
            _fail(path, f"{key}.{unknown[0]}", f"unknown key for type ranges (allowed: type, {', '.join(EMOTIONS)})")
        ranges = []
        for name in EMOTIONS:
            if name not in spec:
                _fail(path, f"{key}.{name}", "missing: type ranges needs [min, max] for each of " + ", ".join(EMOTIONS))
            r = _parse_range(path, f"{key}.{name}", spec[name])
            if not isinstance(r, Range):
                _fail(path, f"{key}.{name}", "expected [min, max]")
            if r.max <= 0:
                _fail(path, f"{key}.{name}.max", "must be > 0")
            ranges.append((r.min, r.max))
        return WeightSpace("ranges", 0.0, tuple(ranges))
    _fail(path, f"{key}.type", f"must be simplex or ranges, got {json.dumps(kind)}")


def parse_study(data: dict, path: str | Path = "<study>") -> Study:
    """Validates a study dict; every error names the file and the key.

    Args:
        data: the decoded JSON object.
        path: the file it came from (for messages; its stem is the default name).
    """
    from mgr_tf.models import FAMILIES, ModelConfig
    from mgr_tf.training.run import TrainConfig

    if not isinstance(data, dict):
        raise UserError(f"{path}: a study must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(STUDY_KEYS))
    if unknown:
        _fail(path, unknown[0], f"unknown key (allowed: {', '.join(STUDY_KEYS)})")
    name = data.get("name", Path(str(path)).stem)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        _fail(path, "name", f"expected a non-empty name without spaces or slashes, got {json.dumps(name)}")
    model = data.get("model", "cnn")
    if model not in FAMILIES:
        _fail(path, "model", f"must be one of {', '.join(FAMILIES)}, got {json.dumps(model)}")
    features = data.get("features", "fused")
    if features not in BAND_SLICES:
        _fail(path, "features", f"must be {', '.join(BAND_SLICES)}, got {json.dumps(features)}")
    beat = data.get("beat", True)
    if not isinstance(beat, bool):
        _fail(path, "beat", f"expected true or false, got {json.dumps(beat)}")
    data_dir = data.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        _fail(path, "data_dir", f"expected a folder path or null, got {json.dumps(data_dir)}")
    oracle = data.get("oracle", "bayesian")
    if oracle not in ORACLES:
        _fail(path, "oracle", f"must be one of {', '.join(ORACLES)}, got {json.dumps(oracle)}")
    max_trials = _number(path, "max_trials", data.get("max_trials", 10), integer=True, minimum=1)
    executions = _number(path, "executions_per_trial", data.get("executions_per_trial", 1), integer=True, minimum=1)
    epochs = _number(path, "epochs", data.get("epochs", 4), integer=True, minimum=1)
    seed = _number(path, "seed", data.get("seed", 0), integer=True, minimum=0)
    batch_size = _number(path, "batch_size", data.get("batch_size", 32), integer=True, minimum=1)
    max_frames = _number(path, "max_frames", data.get("max_frames"), integer=True, minimum=1, allow_none=True)
    val_fraction = _number(path, "val_fraction", data.get("val_fraction", 0.15))
    if not 0.0 < val_fraction < 1.0:
        _fail(path, "val_fraction", f"must be in (0, 1): the objective needs a validation split, got {val_fraction}")
    references = data.get("references", True)
    if not isinstance(references, bool):
        _fail(path, "references", f"expected true or false, got {json.dumps(references)}")

    overrides = data.get("model_overrides", {})
    if not isinstance(overrides, dict):
        _fail(path, "model_overrides", "expected an object of ModelConfig fields")
    if "family" in overrides:
        _fail(path, "model_overrides.family", "set the family with the top-level key 'model'")
    try:
        model_config = from_dict(ModelConfig, {"family": model, **overrides})
    except (ValueError, TypeError) as exc:
        _fail(path, "model_overrides", str(exc))
    train_overrides = data.get("train_overrides", {})
    if not isinstance(train_overrides, dict):
        _fail(path, "train_overrides", "expected an object of TrainConfig fields")
    for key in TRAIN_KEYS_OWNED:
        if key in train_overrides:
            _fail(path, f"train_overrides.{key}", "set by the study itself (epochs / search space), not here")
    try:
        train_config = from_dict(TrainConfig, {**train_overrides, "epochs": epochs})
    except (ValueError, TypeError) as exc:
        _fail(path, "train_overrides", str(exc))

    space_spec = data.get("search_space", {})
    if not isinstance(space_spec, dict):
        _fail(path, "search_space", "expected an object")
    unknown = sorted(set(space_spec) - {"weights", *SEARCHABLE})
    if unknown:
        _fail(path, f"search_space.{unknown[0]}", f"unknown key (allowed: weights, {', '.join(SEARCHABLE)})")
    weights = _parse_weights(path, space_spec.get("weights", {"type": "simplex"}))
    space = []
    for key in SEARCHABLE:
        if key not in space_spec:
            continue
        value = _parse_range(path, f"search_space.{key}", space_spec[key])
        if key == "dropout" and (value.max if isinstance(value, Range) else value) >= 1.0:
            _fail(path, f"search_space.{key}", "dropout must stay below 1")
        if not isinstance(value, Range):  # a fixed value: fold it into the base config
            if SEARCHABLE[key] == "model":
                model_config = dataclasses.replace(model_config, **{key: value})
            else:
                train_config = dataclasses.replace(train_config, **{key: value})
            continue
        space.append((key, value))
    return Study(name=name, description=str(data.get("description", "")), model=model, features=features,
                 beat=beat, data_dir=data_dir, oracle=oracle, max_trials=max_trials, executions_per_trial=executions,
                 epochs=epochs, seed=seed, batch_size=batch_size, max_frames=max_frames, val_fraction=val_fraction,
                 weights=weights, space=tuple(space), model_config=model_config, train_config=train_config,
                 references=references)


def load_study(path: str | Path) -> Study:
    """Reads and validates a study file.

    Args:
        path: the JSON file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such study file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}, line {exc.lineno}: invalid JSON: {exc.msg}") from None
    return parse_study(data, path)


# --------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """What one model is trained with: the task weights (or learned ones) and the searched values.

    Args:
        weights: (valence, energy, danceability) weights; ignored when `learned`.
        learned: learn the weights (uncertainty weighting) instead.
        values: learning_rate / dropout / spearman_weight values in effect.
    """

    weights: tuple[float, ...]
    learned: bool = False
    values: tuple[tuple[str, float], ...] = ()


def _base_value(study: Study, key: str) -> float:
    owner = study.model_config if SEARCHABLE[key] == "model" else study.train_config
    return float(getattr(owner, key))


def _default(study: Study, key: str, r: Range) -> float:
    if r.default is not None:
        return r.default
    base = _base_value(study, key)
    if r.min <= base <= r.max:
        return base
    return math.sqrt(r.min * r.max) if r.sampling == "log" else (r.min + r.max) / 2


def weights_from_values(study: Study, values: dict) -> tuple[float, ...]:
    """The task weights that a trial's hyperparameter values stand for (see the module docstring).

    Args:
        study: the study.
        values: the trial's hyperparameter values.
    """
    if study.weights.type == "simplex":
        e = [-math.log(float(values[f"u_{name}"])) for name in EMOTIONS]
        return tuple(study.weights.total * x / sum(e) for x in e)
    return tuple(float(values[f"w_{name}"]) for name in EMOTIONS)


def declare_hyperparameters(study: Study, hp) -> Setting:
    """Declares the study's hyperparameters on `hp` and returns the setting they give.

    Args:
        study: the study.
        hp: a `keras_tuner.HyperParameters`.
    """
    if study.weights.type == "simplex":
        lo, hi = SIMPLEX_U_RANGE
        for name in EMOTIONS:
            hp.Float(f"u_{name}", lo, hi, default=0.5)  # equal u's = equal weights
    else:
        for name, (lo, hi) in zip(EMOTIONS, study.weights.ranges):
            hp.Float(f"w_{name}", lo, hi, default=min(max(1.0, lo), hi))
    values = []
    for key, r in study.space:
        values.append((key, hp.Float(key, r.min, r.max, sampling=r.sampling, default=_default(study, key, r))))
    return Setting(weights_from_values(study, hp.values), False, tuple(values))


def reference_settings(study: Study) -> dict[str, Setting]:
    """The fixed reference rows: equal, published (1.5, 0.8, 0.8) and learned weights, other values at defaults.

    Args:
        study: the study.
    """
    from mgr_tf.losses import EQUAL_WEIGHTS, PUBLISHED_WEIGHTS

    values = tuple((key, _default(study, key, r)) for key, r in study.space)
    return {
        "equal": Setting(tuple(float(EQUAL_WEIGHTS[t]) for t in EMOTIONS), False, values),
        "published": Setting(tuple(float(PUBLISHED_WEIGHTS[t]) for t in EMOTIONS), False, values),
        "learned": Setting((1.0, 1.0, 1.0), True, values),
    }


# --------------------------------------------------------------------------------------------- hypermodel
def _hypermodel_class():
    import keras_tuner

    class WeightsHyperModel(keras_tuner.HyperModel):
        """Builds, compiles and fits one multitask model per trial with the training code of `mgr_tf.train`.

        Args:
            study: the study.
            data: the DataConfig (multitask, with a validation split).
        """

        def __init__(self, study: Study, data: DataConfig):
            super().__init__(name=study.name)
            self.study, self.data = study, data
            self.execution = 0
            self._info = None
            self._datasets = None

        @property
        def info(self):
            if self._info is None:
                from mgr_tf.data import dataset_info

                self._info = dataset_info(self.data)
            return self._info

        def datasets(self):
            if self._datasets is None:
                from mgr_tf.data import make_dataset

                self._datasets = (make_dataset(self.data, "train"), make_dataset(self.data, "validation"))
            return self._datasets

        def build(self, hp):
            return self.build_setting(declare_hyperparameters(self.study, hp))[1]

        def configs(self, setting: Setting):
            """(ModelConfig, TrainConfig) of a setting."""
            values = dict(setting.values)
            model_cfg = dataclasses.replace(
                self.study.model_config, **{k: v for k, v in values.items() if SEARCHABLE[k] == "model"})
            train_cfg = dataclasses.replace(
                self.study.train_config, loss_weights=tuple(setting.weights), learned_weights=setting.learned,
                **{k: v for k, v in values.items() if SEARCHABLE[k] == "train"})
            return model_cfg, train_cfg

        def build_setting(self, setting: Setting, info=None, data: DataConfig | None = None):
            """Returns (plain model, model to fit) for a setting, seeded like `mgr_tf.train`."""
            import keras

            from mgr_tf.models import build_model
            from mgr_tf.training.run import compile_for_task

            info = info or self.info
            keras.utils.set_random_seed(self.study.seed + self.execution)
            model_cfg, train_cfg = self.configs(setting)
            model = build_model(model_cfg, "multitask", num_bands=info.num_bands, frames=info.frames,
                                num_classes=info.num_classes, norm_mean=info.norm_mean, norm_std=info.norm_std,
                                class_names=info.class_names)
            return model, compile_for_task(model, data or self.data, train_cfg, train_cfg.learning_rate)

        def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
            from mgr_tf.training.run import extra_callbacks

            train_ds, val_ds = self.datasets()
            try:
                return model.fit(train_ds, validation_data=val_ds, epochs=epochs or self.study.epochs,
                                 initial_epoch=initial_epoch, verbose=0, shuffle=False,
                                 callbacks=[*extra_callbacks(model, self.data), *callbacks])
            finally:
                self.execution += 1

    return WeightsHyperModel


def _tuner_class(oracle: str):
    import keras_tuner

    base = keras_tuner.Hyperband if oracle == "hyperband" else keras_tuner.Tuner

    class StudyTuner(base):
        """The keras-tuner tuner of a study: records which tuner ran a trial and prints one line per trial."""

        def run_trial(self, trial, *args, **kwargs):
            self.hypermodel.execution = 0
            write_json(Path(self.get_trial_dir(trial.trial_id)) / "ran_by.json",
                       {"tuner_id": self.tuner_id, "pid": os.getpid()})
            return super().run_trial(trial, *args, **kwargs)

        def on_trial_begin(self, trial):
            self._trial_started = time.time()
            super().on_trial_begin(trial)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            done = self.oracle.get_trial(trial.trial_id)
            setting = declare_hyperparameters(self.hypermodel.study, trial.hyperparameters.copy())
            weights = "/".join(f"{w:.2f}" for w in setting.weights)
            extra = "".join(f", {k} {v:.3g}" for k, v in setting.values)
            score = "failed" if done.score is None else f"{OBJECTIVE} {done.score:.3f}"
            best = self.oracle.get_best_trials(1)
            best_text = f" | best {best[0].score:.3f} (trial {best[0].trial_id})" if best and best[0].score is not None else ""
            total = self.oracle.max_trials or "?"
            print(f"[tune] trial {trial.trial_id} of {total} ({self.tuner_id}): weights v/e/d {weights}{extra} -> "
                  f"{score}{best_text}, {time.time() - self._trial_started:.0f} s", flush=True)

    return StudyTuner


def make_tuner(study: Study, data: DataConfig, run_dir: Path, max_trials: int):
    """The tuner of a study; reloads the state in `run_dir` if there is one (overwrite=False).

    Args:
        study: the study.
        data: the DataConfig (with a validation split).
        run_dir: the run folder; the tuner state lives in run_dir/tuner.
        max_trials: the number of trials to reach (finished ones count).
    """
    import keras_tuner

    hypermodel = _hypermodel_class()(study, data)
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    common = dict(directory=str(run_dir), project_name="tuner", overwrite=False)
    cls = _tuner_class(study.oracle)
    if study.oracle == "hyperband":
        tuner = cls(hypermodel=hypermodel, objective=objective, max_epochs=study.epochs, factor=HYPERBAND_FACTOR,
                    seed=study.seed, executions_per_trial=study.executions_per_trial, **common)
        tuner.oracle.max_trials = max_trials  # Hyperband runs its own schedule; this only caps it
        return tuner
    if study.oracle == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(objective=objective, max_trials=max_trials, seed=study.seed)
    else:
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(objective=objective, max_trials=max_trials,
                                                                seed=study.seed)
    return cls(oracle=oracle, hypermodel=hypermodel, executions_per_trial=study.executions_per_trial, **common)


# --------------------------------------------------------------------------------------------- results
def _at_step(metrics, name: str, step: int | None) -> float | None:
    if not metrics.exists(name):
        return None
    history = metrics.get_history(name)
    for obs in history:
        if step is None or obs.step == step:
            value = obs.value
            return float(sum(value) / len(value)) if isinstance(value, (list, tuple)) else float(value)
    return None


def trial_rows(study: Study, tuner, run_dir: Path) -> list[dict]:
    """One row per finished trial of the oracle.

    Args:
        study: the study.
        tuner: the tuner (chief or local).
        run_dir: the run folder (for the `ran_by.json` files).
    """
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.status != "COMPLETED" or trial.score is None:
            continue
        setting = declare_hyperparameters(study, trial.hyperparameters.copy())
        ran_by = Path(run_dir) / "tuner" / f"trial_{trial.trial_id}" / "ran_by.json"
        row = {"trial": trial.trial_id, "kind": "trial",
               **{f"w_{t}": w for t, w in zip(EMOTIONS, setting.weights)}, **dict(setting.values),
               "best_epoch": None if trial.best_step is None else int(trial.best_step) + 1,
               **{f"val_{t}_spearman": _at_step(trial.metrics, f"val_{t}_spearman", trial.best_step) for t in EMOTIONS},
               OBJECTIVE: float(trial.score),
               "tuner_id": json.loads(ran_by.read_text())["tuner_id"] if ran_by.exists() else ""}
        rows.append(row)
    return rows


def _reference_fingerprint(study: Study, data: DataConfig, records: str) -> str:
    from mgr_tf.training.run import fingerprint

    keep = {k: v for k, v in study.to_json().items() if k not in ("max_trials", "oracle", "description", "name")}
    return fingerprint({"study": keep, "data": to_dict(data), "records": records})


def reference_rows(study: Study, hypermodel, run_dir: Path) -> list[dict]:
    """Trains the reference rows once (same epochs and seed as the trials); cached in run_dir/references.json.

    Args:
        study: the study.
        hypermodel: the study's hypermodel (its data and builders).
        run_dir: the run folder.
    """
    cache_path = run_dir / "references.json"
    key = _reference_fingerprint(study, hypermodel.data, hypermodel.info.fingerprint)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if cache.get("fingerprint") != key:
        cache = {"fingerprint": key, "rows": {}}
    for name, setting in reference_settings(study).items():
        if name in cache["rows"]:
            print(f"[tune] reference '{name}': cached", flush=True)
            continue
        started = time.time()
        scores, per_target, epochs, weights = [], [], [], []
        for execution in range(study.executions_per_trial):
            hypermodel.execution = execution
            _model, fit_model = hypermodel.build_setting(setting)
            history = hypermodel.fit(None, fit_model).history
            curve = history.get(OBJECTIVE) or [float("nan")]
            best = max(range(len(curve)), key=lambda i: -math.inf if math.isnan(curve[i]) else curve[i])
            scores.append(curve[best])
            epochs.append(best + 1)
            per_target.append([history.get(f"val_{t}_spearman", [math.nan] * len(curve))[best] for t in EMOTIONS])
            if setting.learned:
                learned = fit_model.task_weights()
                weights.append([learned[t] for t in EMOTIONS])
        hypermodel.execution = 0
        mean = lambda xs: float(sum(xs) / len(xs))  # noqa: E731
        final_w = [mean([w[i] for w in weights]) for i in range(3)] if weights else list(setting.weights)
        row = {"trial": f"ref:{name}", "kind": "reference",
               **{f"w_{t}": w for t, w in zip(EMOTIONS, final_w)}, **dict(setting.values),
               "best_epoch": int(round(mean(epochs))),
               **{f"val_{t}_spearman": mean([p[i] for p in per_target]) for i, t in enumerate(EMOTIONS)},
               OBJECTIVE: mean(scores), "tuner_id": "", "learned": setting.learned}
        cache["rows"][name] = row
        write_json(cache_path, cache)
        print(f"[tune] reference '{name}' weights: {OBJECTIVE} {row[OBJECTIVE]:.3f}, {time.time() - started:.0f} s",
              flush=True)
    return list(cache["rows"].values())


def _sort_key(row: dict):
    value = row.get(OBJECTIVE)
    return (value is None or math.isnan(value), -(value or 0.0))


def table_columns(study: Study) -> list[str]:
    """Column order of the results table.

    Args:
        study: the study.
    """
    return ["rank", "trial", "kind", *[f"w_{t}" for t in EMOTIONS], *[k for k, _ in study.space], "best_epoch",
            *[f"val_{t}_spearman" for t in EMOTIONS], OBJECTIVE, "tuner_id"]


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_results(study: Study, rows: list[dict], run_dir: Path, *, header: str = "") -> list[dict]:
    """Writes results.csv and results.md (best first) and the objective-vs-weights plot; returns sorted rows.

    Args:
        study: the study.
        rows: trial and reference rows.
        run_dir: the run folder.
        header: text placed above the Markdown table.
    """
    rows = sorted(rows, key=_sort_key)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    columns = table_columns(study)
    with open(run_dir / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
    lines = [f"# Study `{study.name}`", "", header, "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_fmt(row.get(k)) for k in columns]
        if row["kind"] == "reference" and row.get("learned"):
            cells[1] += " (final learned weights)"
        lines.append("| " + " | ".join(cells) + " |")
    (run_dir / "results.md").write_text("\n".join(lines) + "\n")
    plot_objective(study, rows, run_dir / "objective_vs_weights.png")
    return rows


def plot_objective(study: Study, rows: list[dict], path: Path) -> None:
    """Objective against each weight share, and the trials on the weight simplex (barycentric), coloured by it.

    Args:
        study: the study.
        rows: the table rows.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def shares(row):
        w = np.array([row[f"w_{t}"] for t in EMOTIONS], float)
        return w / w.sum() if w.sum() > 0 else w

    trials = [r for r in rows if r["kind"] == "trial" and not math.isnan(r[OBJECTIVE])]
    refs = [r for r in rows if r["kind"] == "reference" and not math.isnan(r[OBJECTIVE])]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for i, t in enumerate(EMOTIONS):
        ax = axes[i]
        ax.scatter([shares(r)[i] for r in trials], [r[OBJECTIVE] for r in trials], c="tab:blue", label="trials")
        for r, marker in zip(refs, "s^D"):
            ax.scatter([shares(r)[i]], [r[OBJECTIVE]], marker=marker, s=70, edgecolors="k", label=r["trial"])
        ax.set_xlabel(f"share of the {t} weight (w / sum w)")
        ax.set_ylabel("val mean Spearman" if i == 0 else "")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    ax = axes[3]
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    ax.plot(*np.vstack([corners, corners[:1]]).T, color="grey", lw=1)
    for corner, t, align in zip(corners, EMOTIONS, ["left", "right", "center"]):
        ax.text(corner[0], corner[1] + (0.04 if align == "center" else -0.07), t, fontsize=9, ha=align)
    points = [(shares(r) @ corners, r[OBJECTIVE]) for r in trials + refs]
    if points:
        xy = np.array([p for p, _ in points])
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=[v for _, v in points], cmap="viridis", edgecolors="k")
        fig.colorbar(sc, ax=ax, label="val mean Spearman")
        for (p, _), r in zip(points[len(trials):], refs):
            ax.annotate(r["trial"][4:], p, fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.12, 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("weights on the simplex")
    fig.suptitle(f"{study.name}: {OBJECTIVE} against the task weights ({len(trials)} trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary_header(study: Study, rows: list[dict]) -> str:
    """A few sentences above the table: best trial and its gain over the reference rows.

    Args:
        study: the study.
        rows: all rows.
    """
    trials = [r for r in rows if r["kind"] == "trial"]
    refs = {r["trial"]: r for r in rows if r["kind"] == "reference"}
    lines = [f"Oracle {study.oracle}, {len(trials)} finished trials of {study.epochs} epoch(s) each, "
             f"{study.model.upper()} on {study.features}{' beat-synced' if study.beat else ''} spectrograms, "
             f"seed {study.seed}. Objective: {OBJECTIVE} (mean validation Spearman of "
             f"{', '.join(EMOTIONS)}), best epoch per row. Reference rows use the same epochs and seed."]
    if trials:
        best = min(trials, key=_sort_key)
        lines.append(f"Best trial {best['trial']}: weights " + ", ".join(f"{t} {best[f'w_{t}']:.3f}" for t in EMOTIONS)
                     + f" -> {best[OBJECTIVE]:.4f}.")
        for name, ref in refs.items():
            lines.append(f"Gain over {name[4:]} weights: {best[OBJECTIVE] - ref[OBJECTIVE]:+.4f}.")
    return " ".join(lines)


def best_json(study: Study, rows: list[dict], tuner) -> dict:
    """best.json: the best trial's hyperparameters, weights and scores, and the matching train command.

    Args:
        study: the study.
        rows: the sorted rows.
        tuner: the tuner.
    """
    trials = [r for r in rows if r["kind"] == "trial"]
    if not trials:
        return {}
    best = trials[0]
    trial = tuner.oracle.trials[best["trial"]]
    weights = [best[f"w_{t}"] for t in EMOTIONS]
    values = {k: best[k] for k, _ in study.space}
    setting = Setting(tuple(weights), False, tuple(values.items()))
    model_cfg, train_cfg = tuner.hypermodel.configs(setting)
    data = tuner.hypermodel.data
    flags = ["--task", "multitask", "--model", study.model, "--features", study.features]
    flags += _changed_flags(data, DataConfig(), skip=("task", "features", "variable_length"))
    flags += _changed_flags(model_cfg, type(model_cfg)(family=study.model), skip=("family",))
    flags += _changed_flags(train_cfg, type(train_cfg)(), skip=("loss_weights", "learned_weights"))
    flags += ["--loss-weights", *(f"{w:.4f}" for w in weights)]
    return {"trial_id": best["trial"], OBJECTIVE: best[OBJECTIVE],
            "weights": dict(zip(EMOTIONS, weights)), "values": values,
            "val_spearman": {t: best[f"val_{t}_spearman"] for t in EMOTIONS}, "best_epoch": best["best_epoch"],
            "hyperparameters": dict(trial.hyperparameters.values),
            "best_overall": {"trial": rows[0]["trial"], OBJECTIVE: rows[0][OBJECTIVE]},
            "train_command": "python -m mgr_tf.train " + " ".join(shlex.quote(f) for f in flags)}


def _changed_flags(config, defaults, skip=()) -> list[str]:
    """`mgr_tf.train` flags for the fields of `config` that differ from `defaults` (flag = --field-name)."""
    flags = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in skip or value == getattr(defaults, field.name):
            continue
        flag = "--" + ("lr" if field.name == "learning_rate" else field.name.replace("_", "-"))
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            flags += [flag, *(str(v) for v in value)]
        elif value is not None:
            flags += [flag, f"{value:.4g}" if isinstance(value, float) else str(value)]
    return flags


# --------------------------------------------------------------------------------------------- export
def export_best(study: Study, hypermodel, row: dict, run_dir: Path, name: str, root: str) -> Path:
    """Retrains a results row's configuration on train + validation and exports it like `mgr_tf.train`.

    Args:
        study: the study.
        hypermodel: the study's hypermodel.
        row: the results row (trial or reference) to retrain.
        run_dir: the study's run folder; the retrained run goes to run_dir/export_<name>.
        name: export name.
        root: export root folder.
    """
    import numpy as np

    from mgr_tf.training import report as R
    from mgr_tf.data import dataset_info, make_dataset
    from mgr_tf.training.run import export_run, extra_callbacks, run_config, targets_and_predictions

    setting = Setting(tuple(row[f"w_{t}"] for t in EMOTIONS), bool(row.get("learned")),
                      tuple((k, float(row[k])) for k, _ in study.space))
    full = dataclasses.replace(hypermodel.data, val_fraction=0.0)
    info = dataset_info(full)
    epochs = max(1, int(row.get("best_epoch") or study.epochs))
    out = run_dir / f"export_{name}"
    out.mkdir(parents=True, exist_ok=True)
    hypermodel.execution = 0
    model, fit_model = hypermodel.build_setting(setting, info=info, data=full)
    model_cfg, train_cfg = hypermodel.configs(setting)
    train_cfg = dataclasses.replace(train_cfg, epochs=epochs)
    print(f"[tune] export: retraining {row['trial']} on train + validation ({info.counts['train']} clips) "
          f"for {epochs} epoch(s)", flush=True)
    fit_model.fit(make_dataset(full, "train"), epochs=epochs, verbose=2, shuffle=False,
                  callbacks=extra_callbacks(fit_model, full))
    config = {**run_config(full, model_cfg, train_cfg, info, export_name=name,
                           command=f"python -m mgr_tf.tune (study {study.name}, row {row['trial']})"),
              "tune": {"study": study.to_json(), "row": row}}
    write_json(out / "config.json", config)
    model.save(out / "model.keras")
    metrics: dict = {}
    if info.test_labelled:
        y_true, predictions = targets_and_predictions(model, make_dataset(full, "test"))
        for t in EMOTIONS:
            metrics[t] = R.emotion_metrics(np.reshape(y_true[t], -1), np.reshape(predictions[t], -1))
        print("[tune] export: test " + ", ".join(f"{t} Spearman {metrics[t]['spearman']:.3f}" for t in EMOTIONS),
              flush=True)
    else:
        print("[tune] export: the test split has no labels; no test metrics", flush=True)
    write_json(out / "report.json", {"metrics": metrics, "eval_split": "test" if metrics else None,
                                      "epochs_run": epochs, "row": row})
    return Path(export_run(out, name=name, root=root, metrics=metrics))


# --------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mgr_tf.tune",
        description="Run a keras-tuner study of the multitask loss weights (valence, energy, danceability). "
                    "Each trial trains a model with the same code as mgr_tf.train and is scored by the mean "
                    "validation Spearman correlation. Rerunning the same command continues the study. "
                    "Distributed tuning: set KERASTUNER_TUNER_ID (chief / tuner0, tuner1, ...), "
                    "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (see tuning/README.md).")
    parser.add_argument("study", help="study file, e.g. tuning/multitask_weights.json")
    parser.add_argument("--data-dir", default=None,
                        help="dataset root (overrides the study's data_dir; default: the study's, else the "
                             "embedded synthetic corpus)")
    parser.add_argument("--max-trials", type=int, default=None,
                        help="trials to reach in total, finished ones included (default: the study's max_trials)")
    parser.add_argument("--out", default=None, help="run folder (default: tuning/runs/<study name>)")
    parser.add_argument("--export", default=None, metavar="NAME",
                        help="retrain the best configuration on train + validation and export it as "
                             "exported_models/NAME/<version>/ (default: no export)")
    parser.add_argument("--export-root", default="exported_models", help="export root folder (default: exported_models)")
    parser.add_argument("--references", action=argparse.BooleanOptionalAction, default=None,
                        help="train the reference rows (equal, published, learned weights) once, cached in the "
                             "run folder (default: the study's 'references', true)")
    parser.add_argument("--export-from", choices=["trial", "overall"], default="trial",
                        help="with --export: the best tuned trial, or the best row overall (references included) "
                             "(default: trial)")
    return parser


def _check_run_folder(run_dir: Path, study: Study, data: DataConfig) -> None:
    """Refuses to continue a run folder that holds a different study (the tuner state would not match)."""
    config_path = run_dir / "config.json"
    if not config_path.exists():
        return
    old = json.loads(config_path.read_text())
    new = {"study": study.to_json(), "data": to_dict(data)}
    for section in ("study", "data"):
        for key, value in new[section].items():
            if key in ("max_trials", "references", "description"):
                continue
            if json.dumps(old.get(section, {}).get(key), sort_keys=True) != json.dumps(value, sort_keys=True):
                raise UserError(f"{run_dir}: this run folder holds a different study ({section}.{key} differs); "
                                "use another --out or delete the folder to start afresh")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    study = load_study(args.study)
    if args.max_trials is not None and args.max_trials < 1:
        raise UserError(f"--max-trials must be at least 1, got {args.max_trials}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise FileNotFoundError(f"{args.data_dir}: --data-dir is not a folder")
    max_trials = args.max_trials or study.max_trials
    data = study.data_config(args.data_dir)
    run_dir = Path(args.out or Path("tuning") / "runs" / study.name)
    role = os.environ.get("KERASTUNER_TUNER_ID", "") if "KERASTUNER_ORACLE_IP" in os.environ else ""
    is_worker = bool(role) and "chief" not in role
    if not is_worker:
        _check_run_folder(run_dir, study, data)
        run_dir.mkdir(parents=True, exist_ok=True)
        command = "python -m mgr_tf.tune " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        import keras_tuner

        write_json(run_dir / "config.json", {"study": study.to_json(), "data": to_dict(data),
                                             "study_file": str(args.study), "command": command.strip(),
                                             "max_trials": max_trials, "keras_tuner": keras_tuner.__version__})

    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    tuner = make_tuner(study, data, run_dir, max_trials)
    if is_worker:
        print(f"[tune] worker {role}: study {study.name}, asking the chief at {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']} for trials", flush=True)
    else:
        done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
        where = f" ({role})" if role else ""
        print(f"[tune] study {study.name}{where}: oracle {study.oracle}, {done} of {max_trials} trials done, "
              f"{study.epochs} epoch(s) each; run folder {run_dir}", flush=True)
    if role and not is_worker:
        print(f"[tune] chief: oracle listening on {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']}; start the workers now", flush=True)
    try:
        tuner.search(verbose=0)
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        cause = [line for line in str(exc).splitlines() if line.strip()][-1]
        raise UserError(f"{args.study}: trials keep failing ({cause}); see the traceback above") from None
    if is_worker:
        print(f"[tune] worker {role}: no trials left, exiting", flush=True)
        return 0

    rows = trial_rows(study, tuner, run_dir)
    use_references = study.references if args.references is None else args.references
    if use_references:
        rows += reference_rows(study, tuner.hypermodel, run_dir)
    rows = write_results(study, rows, run_dir, header=summary_header(study, rows))
    best = best_json(study, rows, tuner)
    write_json(run_dir / "best.json", best)
    print(f"[tune] results: {run_dir / 'results.md'} ({len(rows)} rows), plot {run_dir / 'objective_vs_weights.png'}")
    if best:
        print(f"[tune] best trial {best['trial_id']}: " + ", ".join(f"{t} {w:.3f}" for t, w in best["weights"].items())
              + f" -> {OBJECTIVE} {best[OBJECTIVE]:.4f}")
        print(f"[tune] reproduce: {best['train_command']}")
    if args.export:
        pool = [r for r in rows if args.export_from == "overall" or r["kind"] == "trial"]
        if not pool:
            raise UserError("--export: no finished trial to export")
        export_dir = export_best(study, tuner.hypermodel, pool[0], run_dir, args.export, args.export_root)
        print(f"[tune] exported SavedModel: {export_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
