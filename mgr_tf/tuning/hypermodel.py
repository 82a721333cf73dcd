"""The keras-tuner side of a study: the HyperModel that builds and fits one model per trial, and the tuner.

A trial's model is built, compiled and fitted by the training code of `mgr_tf.train`
(`mgr_tf.training.runner.build_for_run`, then `mgr_tf.training.fit.compile_for` and its callbacks), so there is no
second model or loss code here. With a pretrained encoder (its frozen part), the clips are embedded once
(`mgr_tf.training.frozen`) and every trial fits only the heads on the embeddings, as training does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import keras_tuner

from mgr_tf.core.config import DataConfig
from mgr_tf.core.io import write_json
from mgr_tf.data import dataset_info, make_dataset
from mgr_tf.data.spec import resolve
from mgr_tf.models import get_backbone
from mgr_tf.training.fit import compile_for, task_callbacks
from mgr_tf.training.frozen import adapt_norm, feature_datasets, features_of, split_at
from mgr_tf.training.runner import build_for_run
from mgr_tf.tuning.space import Setting, declare_hyperparameters, reference_settings, setting_configs
from mgr_tf.tuning.study import HYPERBAND_FACTOR, OBJECTIVE, Study


def build_and_compile(study: Study, setting: Setting, data: DataConfig, info, *, execution: int = 0,
                      frozen_train=None):
    """Builds and compiles the model of a setting, seeded like `mgr_tf.train`.

    Args:
        study: the study.
        setting: the weights and searched values.
        data: the DataConfig the model trains on.
        info: its `DatasetInfo`.
        execution: index of the model within its trial (offsets the seed).
        frozen_train: for a backbone with a frozen pretrained part, the training clips' frozen features
            (`frozen.Features`): the heads alone are compiled, on those features (their normalisation adapted).

    Returns:
        (plain model, model to fit): the second wraps the first (or, with `frozen_train`, its heads) with learned
        weights.
    """
    keras.utils.set_random_seed(study.seed + execution)
    model_cfg, train_cfg, regression = setting_configs(study, setting)
    plan = study.plan(data, model_cfg, train_cfg, regression)
    model = build_for_run(plan, info)
    fitted = model
    if frozen_train is not None:
        _, fitted = split_at(model, get_backbone(model_cfg.family).encoder.frozen_output)
        adapt_norm(fitted, frozen_train.x)
    return model, compile_for(plan.spec.task, fitted, regression, train_cfg.learning_rate)


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
        self._frozen = None

    @property
    def info(self):
        """The `DatasetInfo` of the study's data (prepared on first use)."""
        if self._info is None:
            self._info = dataset_info(self.data)
        return self._info

    @property
    def encoder(self):
        """The backbone's pretrained `Encoder` (a frozen part), or None."""
        return get_backbone(self.study.model).encoder

    def frozen_features(self):
        """(train, validation) `frozen.Features` of the encoder, computed once (None without an encoder)."""
        if self.encoder is None:
            return None
        if self._frozen is None:
            model, _ = build_and_compile(self.study, reference_settings(self.study)["equal"], self.data, self.info)
            frozen, _ = split_at(model, self.encoder.frozen_output)
            spec = resolve(self.data)
            self._frozen = (features_of(frozen, spec, "train"), features_of(frozen, spec, "validation"))
        return self._frozen

    def datasets(self):
        """(train, validation) datasets, made once: the clips, or with an encoder their frozen features."""
        if self._datasets is None:
            if self.encoder is None:
                self._datasets = (make_dataset(self.data, "train"), make_dataset(self.data, "validation"))
            else:
                train, val = self.frozen_features()
                self._datasets = feature_datasets(train, val, batch_size=self.data.batch_size, seed=self.data.seed)
        return self._datasets

    def build(self, hp):
        return self.build_setting(declare_hyperparameters(self.study, hp))[1]

    def build_setting(self, setting: Setting):
        """(plain model, model to fit) of a setting, for the current execution."""
        frozen = self.frozen_features()
        return build_and_compile(self.study, setting, self.data, self.info, execution=self.execution,
                                 frozen_train=None if frozen is None else frozen[0])

    def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        train_ds, val_ds = self.datasets()
        try:
            return model.fit(train_ds, validation_data=val_ds, epochs=epochs or self.study.epochs,
                             initial_epoch=initial_epoch, verbose=0, shuffle=False,
                             callbacks=[*task_callbacks(resolve(self.data).task, model), *callbacks])
        finally:
            self.execution += 1


class _StudyTunerMixin:
    """Records which tuner ran a trial (run_dir/tuner/trial_*/ran_by.json) and prints one line per trial."""

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
        best_text = (f" | best {best[0].score:.3f} (trial {best[0].trial_id})"
                     if best and best[0].score is not None else "")
        total = self.oracle.max_trials or "?"
        # One plain line per trial (no carriage returns), so logs and pipes stay readable.
        print(f"[tune] trial {trial.trial_id} of {total} ({self.tuner_id}): weights v/e/d {weights}{extra} -> "
              f"{score}{best_text}, {time.time() - self._trial_started:.0f} s", flush=True)


class StudyTuner(_StudyTunerMixin, keras_tuner.Tuner):
    """The tuner of a random or Bayesian study."""


class StudyHyperband(_StudyTunerMixin, keras_tuner.Hyperband):
    """The tuner of a Hyperband study."""


def make_tuner(study: Study, data: DataConfig, run_dir: Path, max_trials: int) -> keras_tuner.Tuner:
    """The tuner of a study; reloads the state in `run_dir` if there is one (overwrite=False).

    Args:
        study: the study.
        data: the DataConfig (with a validation split).
        run_dir: the run folder; the tuner state lives in run_dir/tuner.
        max_trials: the number of trials to reach (finished ones count).
    """
    study = study.bind(data)
    hypermodel = WeightsHyperModel(study, data)
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    common = dict(directory=str(run_dir), project_name="tuner", overwrite=False)
    if study.oracle == "hyperband":
        tuner = StudyHyperband(hypermodel=hypermodel, objective=objective, max_epochs=study.epochs,
                               factor=HYPERBAND_FACTOR, seed=study.seed,
                               executions_per_trial=study.executions_per_trial, **common)
        tuner.oracle.max_trials = max_trials  # Hyperband runs its own schedule; this only caps it
        return tuner
    if study.oracle == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(objective=objective, max_trials=max_trials, seed=study.seed)
    else:
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(objective=objective, max_trials=max_trials,
                                                                seed=study.seed)
    return StudyTuner(oracle=oracle, hypermodel=hypermodel, executions_per_trial=study.executions_per_trial,
                      **common)
