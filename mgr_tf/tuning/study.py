"""Study files of the multitask-weight tuner: dataclasses, JSON validation, and what a trial trains with.

A study is a small JSON file (see `tuning/README.md`) naming the model, the data and a search space over the
task weights (one per regression target of the data: valence, energy and danceability in the published data)
and, optionally, the learning rate, dropout and the Spearman weight of the regression loss. `parse_study`
validates it (every error names the file and the key) against the backbone and feature-type registries and the
config dataclasses of `mgr_tf.train`.

Weights on the simplex: for each target a uniform hyperparameter u_t in [0.001, 0.999] is drawn and the
weights are w_t = total * e_t / sum(e) with e_t = -log(u_t). -log of a uniform variable is Exp(1)-distributed
and normalised independent Exp(1) draws are Dirichlet(1, 1, 1), i.e. uniform on the simplex, so random search
samples weight ratios uniformly while the weights always sum to `total` (by default the number of targets: the
scale of equal weights 1, 1, ...).

The targets are the data's (all of them, or the study's "targets"), so a parsed study is bound to its data
(`Study.bind`) before the tuner runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DataConfig, ModelConfig, RegressionConfig, TrainConfig, from_dict, to_dict
from mgr_tf.data.spec import resolve
from mgr_tf.models import BACKBONES, FEATURE_TYPES, get_backbone, model_config_from_dict
from mgr_tf.training.plan import Plan, check

TASK = "multitask"
ORACLES = ("random", "bayesian", "hyperband")
OBJECTIVE = "val_mean_spearman"
SIMPLEX_U_RANGE = (0.001, 0.999)
HYPERBAND_FACTOR = 3
# Non-weight hyperparameters a study may search, and where their fixed value lives.
SEARCHABLE = {"learning_rate": "train", "dropout": "model", "spearman_weight": "regression"}
STUDY_KEYS = ("name", "description", "model", "features", "beat", "data_dir", "oracle", "max_trials",
              "executions_per_trial", "epochs", "seed", "batch_size", "max_frames", "val_fraction",
              "search_space", "model_overrides", "train_overrides", "references", "targets")
# Set by the study itself, so an override would silently be ignored.
TRAIN_KEYS_OWNED = ("epochs", "loss_weights", "learned_weights", "init_from", "freeze_epochs",
                    "finetune_lr_factor", "overfit_batch")
# train_overrides keys that belong to the regression loss (`RegressionConfig`) rather than to `TrainConfig`.
REGRESSION_KEYS = tuple(f.name for f in dataclasses.fields(RegressionConfig))


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
    """How the task weights are searched.

    Args:
        type: "simplex" (Dirichlet-like, weights sum to `total`; see the module docstring) or "ranges"
            (each weight drawn independently from its own range).
        total: sum of the weights on the simplex; None = the number of targets (the sum of equal weights 1).
        ranges: with type "ranges", (target, min, max) per target.
    """

    type: str = "simplex"
    total: float | None = None
    ranges: tuple[tuple[str, float, float], ...] = ()

    def range_of(self, target: str) -> tuple[float, float]:
        """(min, max) of a target's weight (type ranges)."""
        return next((lo, hi) for name, lo, hi in self.ranges if name == target)


@dataclass(frozen=True)
class Study:
    """One keras-tuner study of the multitask weights (parsed from tuning/<study>.json).

    Args:
        name: study name; names the default run folder tuning/runs/<name>.
        description: free text.
        model: backbone family (a name in `mgr_tf.models.BACKBONES`).
        features: model input (a name in `mgr_tf.features.types.FEATURE_TYPES`).
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
        model_config: the base `ModelConfig` (family + model_overrides).
        train_config: the base `TrainConfig` (train_overrides + epochs).
        regression_config: the base `RegressionConfig` (the train_overrides of the regression loss).
        references: train the reference rows (equal, published, learned weights).
        targets: the regression targets whose weights are tuned: the study's "targets", or (once bound to its
            data, `bind`) every target of the data.
        path: the study file (for messages).
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
    model_config: ModelConfig
    train_config: TrainConfig
    regression_config: RegressionConfig = RegressionConfig()
    references: bool = True
    targets: tuple[str, ...] = ()
    path: str = ""

    def data_config(self, data_dir: str | None = None) -> DataConfig:
        """The DataConfig of the study (multitask), optionally with another root.

        Args:
            data_dir: overrides the study's data_dir when given.
        """
        return DataConfig(data_dir=data_dir if data_dir is not None else self.data_dir, task=TASK,
                          features=self.features, beat=self.beat, seed=self.seed, batch_size=self.batch_size,
                          max_frames=self.max_frames, variable_length=get_backbone(self.model).variable_length,
                          val_fraction=self.val_fraction, targets=self.targets,
                          **({"patch_frames": 0} if get_backbone(self.model).encoder else {}))

    def bind(self, data: DataConfig) -> Study:
        """The study with its targets: those its data config selects, else every regression target of the data.

        Raises:
            UserError: the data lacks a selected target, or the weight ranges do not name each target once.
        """
        try:
            targets = resolve(data).task.outputs
        except (ValueError, FileNotFoundError) as exc:
            raise UserError(f"study {self.name}: {exc}") from None
        if self.weights.type == "ranges":
            named = [name for name, _, _ in self.weights.ranges]
            where = f"{self.path or 'study ' + self.name}: search_space.weights"
            for target in targets:
                if target not in named:
                    raise UserError(f"{where}.{target}: missing: type ranges needs [min, max] for each target of "
                                    f"the data ({', '.join(targets)})")
            for name in named:
                if name not in targets:
                    raise UserError(f"{where}.{name}: not a target of the data ({', '.join(targets)})")
        return dataclasses.replace(self, targets=tuple(targets))

    def to_json(self) -> dict:
        """The study as a JSON-ready dict (written to the run folder's config.json); model_config is flat."""
        return {**{k: v for k, v in to_dict(self).items() if k != "path"}, "model_config": to_dict(self.model_config)}

    def plan(self, data: DataConfig, setting_model: ModelConfig | None = None, train: TrainConfig | None = None,
             regression: RegressionConfig | None = None) -> Plan:
        """A training `Plan` of the study's data with its configs (or the given ones)."""
        return Plan(data, setting_model or self.model_config, train or self.train_config,
                    regression or self.regression_config)


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
        total = _number(path, f"{key}.total", spec.get("total", 1.0))  # 1.0: only checked when absent
        if total <= 0:
            _fail(path, f"{key}.total", f"must be > 0, got {total}")
        return WeightSpace("simplex", None if "total" not in spec else float(total))
    if kind == "ranges":
        names = [k for k in spec if k != "type"]
        if not names:
            _fail(path, key, "type ranges needs [min, max] for each target, by target name")
        ranges = []
        for name in names:
            r = _parse_range(path, f"{key}.{name}", spec[name])
            if not isinstance(r, Range):
                _fail(path, f"{key}.{name}", "expected [min, max]")
            if r.max <= 0:
                _fail(path, f"{key}.{name}.max", "must be > 0")
            ranges.append((name, r.min, r.max))
        return WeightSpace("ranges", None, tuple(ranges))
    _fail(path, f"{key}.type", f"must be simplex or ranges, got {json.dumps(kind)}")


def parse_study(data: dict, path: str | Path = "<study>") -> Study:
    """Validates a study dict; every error names the file and the key.

    Args:
        data: the decoded JSON object.
        path: the file it came from (for messages; its stem is the default name).
    """
    if not isinstance(data, dict):
        raise UserError(f"{path}: a study must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(STUDY_KEYS))
    if unknown:
        _fail(path, unknown[0], f"unknown key (allowed: {', '.join(STUDY_KEYS)})")
    name = data.get("name", Path(str(path)).stem)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        _fail(path, "name", f"expected a non-empty name without spaces or slashes, got {json.dumps(name)}")
    model = data.get("model", "cnn")
    if model not in BACKBONES:
        _fail(path, "model", f"must be one of {', '.join(BACKBONES)}, got {json.dumps(model)}")
    features = data.get("features", "fused")
    if features not in FEATURE_TYPES:
        _fail(path, "features", f"must be one of {', '.join(FEATURE_TYPES)}, got {json.dumps(features)}")
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
    targets = data.get("targets", [])
    if not (isinstance(targets, list) and all(isinstance(t, str) and t for t in targets)):
        _fail(path, "targets", f"expected a list of target names, got {json.dumps(targets)}")

    overrides = data.get("model_overrides", {})
    if not isinstance(overrides, dict):
        _fail(path, "model_overrides", "expected an object of ModelConfig fields")
    if "family" in overrides:
        _fail(path, "model_overrides.family", "set the family with the top-level key 'model'")
    try:
        model_config = model_config_from_dict({"family": model, **overrides})
    except (ValueError, TypeError) as exc:
        _fail(path, "model_overrides", str(exc))
    train_overrides = data.get("train_overrides", {})
    if not isinstance(train_overrides, dict):
        _fail(path, "train_overrides", "expected an object of TrainConfig fields")
    for key in TRAIN_KEYS_OWNED:
        if key in train_overrides:
            _fail(path, f"train_overrides.{key}", "set by the study itself (epochs / search space), not here")
    try:
        train_config = from_dict(TrainConfig, {**{k: v for k, v in train_overrides.items() if k not in REGRESSION_KEYS},
                                               "epochs": epochs})
        regression_config = from_dict(RegressionConfig, {k: v for k, v in train_overrides.items()
                                                         if k in REGRESSION_KEYS})
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
            elif SEARCHABLE[key] == "regression":
                regression_config = dataclasses.replace(regression_config, **{key: value})
            else:
                train_config = dataclasses.replace(train_config, **{key: value})
            continue
        space.append((key, value))
    try:
        # (the targets are checked against the data when the study is bound to it)
        check(Plan(DataConfig(task=TASK, features=features, beat=beat, patch_frames=0), model_config, train_config,
                   regression_config))
    except UserError as exc:
        _fail(path, "train_overrides", str(exc))
    return Study(name=name, description=str(data.get("description", "")), model=model, features=features,
                 beat=beat, data_dir=data_dir, oracle=oracle, max_trials=max_trials, executions_per_trial=executions,
                 epochs=epochs, seed=seed, batch_size=batch_size, max_frames=max_frames, val_fraction=val_fraction,
                 weights=weights, space=tuple(space), model_config=model_config, train_config=train_config,
                 regression_config=regression_config, references=references, targets=tuple(targets),
                 path=str(path))


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
