"""Fitting one model: the optimizer and compile, the callbacks, and the phases of a run.

Phases: "main"; or, with `--init-from`, "frozen" (the transferred backbone frozen) then "finetune" at a lower
learning rate; or, for a backbone with a frozen pretrained part, "frozen" (the heads fitted on that part's
features, computed once per clip) then an optional "finetune" end to end. Every phase logs to
`history_<phase>.csv`, keeps its best checkpoint and can be resumed (Keras `BackupAndRestore`).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import keras
import numpy as np

from mgr_tf.core.config import ModelConfig, RegressionConfig, TrainConfig
from mgr_tf.data.spec import DataSpec
from mgr_tf.losses import LogTaskWeights, build_learned_weighting_model
from mgr_tf.metrics import MeanSpearman
from mgr_tf.models import get_backbone
from mgr_tf.models.build import set_backbone_trainable
from mgr_tf.tasks import Task
from mgr_tf.training.frozen import CHUNK, adapt_norm, feature_datasets, features_of, fit_convex_heads, split_at
from mgr_tf.training.resume import BackupAndRestoreBest


def compile_for(task: Task, model, regression: RegressionConfig, learning_rate: float):
    """Compiles `model` for `task` with Adam and returns the model to fit (a learned-weighting wrapper with
    `--learned-weights`, else `model` itself)."""
    optimizer = keras.optimizers.Adam(learning_rate)
    losses = task.losses(regression)
    if regression.learned_weights and not task.classification:
        weighted = build_learned_weighting_model(model, losses)
        weighted.compile(optimizer=optimizer, metrics=task.metrics())
        return weighted
    model.compile(optimizer=optimizer, loss=losses, loss_weights=task.loss_weights(regression),
                  metrics=task.metrics())
    return model


def task_callbacks(task: Task, fit_model) -> list:
    """Callbacks that add derived values to the logs before the others read them: the mean validation Spearman
    of regression targets (the monitor), and the learned task weights."""
    extra = [] if task.classification else [MeanSpearman(task.outputs)]
    if hasattr(fit_model, "task_weights"):
        extra.append(LogTaskWeights())
    return extra


def callbacks(run_dir: Path, phase: str, monitor: tuple[str, str], train: TrainConfig, extra=()):
    """(callbacks, Keras verbosity) of one phase: early stopping, learning-rate schedule, checkpoints, logs, backup.

    A phase with a backup resumes: its weights, optimizer and epoch, and the best-so-far state of early stopping,
    the learning-rate schedule and the checkpoint (`mgr_tf.training.resume`). A phase without one starts afresh,
    its history too (rows of an earlier, finished run of it would mix with the new ones).
    """
    key, mode = monitor
    verbose_progress = 1 if sys.stdout.isatty() else 2
    backup = run_dir / "backup" / phase
    history = run_dir / f"history_{phase}.csv"
    # (a distributed phase resumes from its own checkpoints, `mgr_tf.training.distributed`: its history stays too)
    distributed_backup = run_dir / "backup" / f"{phase}_distributed" / "checkpoint"
    if not (backup / "training_metadata.json").is_file() and not distributed_backup.is_file():
        history.unlink(missing_ok=True)
    tracked = [
        keras.callbacks.EarlyStopping(monitor=key, mode=mode, patience=train.patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ReduceLROnPlateau(monitor=key, mode=mode, factor=0.5, patience=train.lr_patience,
                                          min_lr=1e-6, verbose=1),
        keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / f"best_{phase}.keras"), monitor=key,
                                        mode=mode, save_best_only=True),
    ]
    return [
        *extra,
        *tracked,
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs" / phase)),
        keras.callbacks.CSVLogger(str(history), append=True),
        # Last, so it backs up the others' state after they saw the epoch (and restores it after they reset);
        # double_checkpoint keeps the previous backup, used when a kill corrupted the latest one mid-write.
        BackupAndRestoreBest(str(backup), tracked, double_checkpoint=True),
    ], verbose_progress


def read_history(csv_path: Path) -> dict[str, list[float]]:
    """The training history from a CSV log (survives resumes; the last row per epoch wins)."""
    if not csv_path.exists():
        return {}
    rows: dict[int, dict] = {}
    with open(csv_path) as fh:
        for row in csv.DictReader(fh):
            rows[int(row.pop("epoch"))] = row
    history: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            history.setdefault(key, []).append(float("nan") if value in ("", "NA", None) else float(value))
    return history


def fit_phases(model, spec: DataSpec, model_config: ModelConfig, train: TrainConfig, regression: RegressionConfig,
               run_dir: Path, train_ds, val_ds) -> dict:
    """Fits `model` in its phases, with the run's callbacks (see the module docstring); returns notes for the
    report: "head_fit" (heads solved in closed form), "finetune" (whether fine-tuning beat what it started from)."""
    backbone = get_backbone(model_config.family)
    if backbone.frozen_layer is not None and not train.init_from and splits_at(model, backbone.frozen_layer):
        return _fit_on_frozen_features(model, backbone, spec, model_config, train, regression, run_dir, train_ds,
                                       val_ds)
    phases = [("main", train.epochs, train.learning_rate)]
    if train.init_from:
        freeze = min(train.freeze_epochs, train.epochs)
        phases = [("frozen", freeze, train.learning_rate),
                  ("finetune", train.epochs - freeze, train.learning_rate * train.finetune_lr_factor)]
    notes = {}
    for phase, epochs, lr in phases:
        if epochs <= 0:
            continue
        if train.init_from:
            set_backbone_trainable(model, phase != "frozen")
        if phase == "finetune":
            notes["finetune"] = fit_unless_worse(model, spec.task, train, regression, run_dir, phase, epochs, lr,
                                                 train_ds, val_ds)
        else:
            fit_phase(model, spec.task, train, regression, run_dir, phase, epochs, lr, train_ds, val_ds)
    return notes


def validation_loss(model, task: Task, regression: RegressionConfig, val_ds) -> float:
    """The task's loss on the validation split (inference mode)."""
    fit_model = compile_for(task, model, regression, 1e-3)
    return float(fit_model.evaluate(val_ds, verbose=0, return_dict=True)["loss"])


def fit_unless_worse(model, task: Task, train: TrainConfig, regression: RegressionConfig, run_dir: Path, phase: str,
                     epochs: int, lr: float, train_ds, val_ds) -> dict:
    """`fit_phase`, then back to the starting weights unless the phase lowered the validation loss (fine-tuning
    that does not beat the frozen model it started from is not kept)."""
    before, weights = validation_loss(model, task, regression, val_ds), model.get_weights()
    fit_phase(model, task, train, regression, run_dir, phase, epochs, lr, train_ds, val_ds)
    after = validation_loss(model, task, regression, val_ds)
    kept = after < before
    if not kept:
        model.set_weights(weights)
        print(f"[train] phase {phase}: validation loss {after:.4f} is not below {before:.4f} before it; the weights "
              "it started from are kept", flush=True)
    return {"kept": kept, "val_loss_before": before, "val_loss_after": after}


def fit_phase(model, task: Task, train: TrainConfig, regression: RegressionConfig, run_dir: Path, phase: str,
              epochs: int, lr: float, train_ds, val_ds) -> None:
    """One phase: compile for the task, then fit with the run's callbacks."""
    fit_model = compile_for(task, model, regression, lr)
    monitor = ("val_loss", "min") if train.monitor == "loss" else task.monitor
    phase_callbacks, verbose = callbacks(run_dir, phase, monitor, train, task_callbacks(task, fit_model))
    print(f"[train] phase {phase}: up to {epochs} epochs, learning rate {lr:g}", flush=True)
    fit_model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=phase_callbacks, verbose=verbose,
                  shuffle=False)  # the pipeline shuffles, seeded


def splits_at(model, layer: str) -> bool:
    """Whether everything after `layer` depends on its output alone (not so when the model cuts the input into
    windows before it and pools them after: then the heads are trained with the rest, end to end)."""
    try:
        split_at(model, layer)
    except ValueError:
        return False
    return True


def convex_heads(backbone, train: TrainConfig, regression: RegressionConfig) -> bool:
    """Whether the run's heads are solved in closed form (`--head`; auto: on fixed features, unless learned
    weights are asked for)."""
    if backbone.frozen_layer is None or train.init_from:
        return False
    return train.head == "convex" or (train.head == "auto" and not regression.learned_weights)


def _fit_on_frozen_features(model, backbone, spec: DataSpec, model_config: ModelConfig, train: TrainConfig,
                            regression: RegressionConfig, run_dir: Path, train_ds, val_ds) -> dict:
    """Phase "frozen": the heads on features of the frozen part computed once (solved in closed form, or trained
    with Adam); then, for an encoder, an optional "finetune" end to end."""
    data = spec.config
    frozen, rest = split_at(model, backbone.frozen_layer)
    chunk = CHUNK if backbone.encoder else max(1, data.batch_size)  # an encoder's activations are large
    features_train, features_val = (features_of(frozen, spec, split, chunk=chunk) for split in ("train", "validation"))
    notes = {}
    fine_tune = backbone.encoder.fine_tune if backbone.encoder else (lambda model, config: 0)
    if convex_heads(backbone, train, regression):
        # Without early stopping nothing needs the validation clips, unless fine-tuning follows (it stops on them).
        tunes = bool(backbone.encoder and backbone.encoder.fine_tune_epochs(model_config))
        features = features_train if tunes else features_train + features_val
        adapt_norm(rest, features.x)
        started = time.time()
        heads = fit_convex_heads(model, backbone.frozen_layer, spec.task, features, regression, train.head_c)
        fitted = {"method": "convex", "c": train.head_c, "clips": len(features.ids),
                  "splits": ["train"] if tunes else ["train", "validation"], "seconds": round(time.time() - started, 3),
                  "heads": heads}
        notes["head_fit"] = fitted
        print(f"[train] heads solved in closed form (L2 logistic regression, C {train.head_c:g}) on "
              f"{len(features.ids)} clips ({' + '.join(fitted['splits'])}) in {fitted['seconds']:.1f} s", flush=True)
    else:
        adapt_norm(rest, features_train.x)
        train_features, val_features = feature_datasets(features_train, features_val, batch_size=data.batch_size,
                                                        seed=data.seed)
        fit_phase(rest, spec.task, train, regression, run_dir, "frozen", train.epochs, train.learning_rate,
                  train_features, val_features)
    epochs = fine_tune(model, model_config)
    if epochs:
        notes["finetune"] = fit_unless_worse(model, spec.task, train, regression, run_dir, "finetune", epochs,
                                             train.learning_rate * train.finetune_lr_factor, train_ds, val_ds)
    return notes


def best_epoch(history: dict[str, list[float]], task: Task, train: TrainConfig) -> int:
    """The epoch (1-based) whose weights early stopping restored: the best value of the phase's monitor."""
    key, mode = ("val_loss", "min") if train.monitor == "loss" else task.monitor
    values = np.asarray(history[key], np.float64)
    return int(np.nanargmin(values) if mode == "min" else np.nanargmax(values)) + 1


def refit_phase(model, task: Task, regression: RegressionConfig, run_dir: Path, rates: list[float], train_ds) -> None:
    """`--refit`: fits a fresh `model` on train + validation for len(rates) epochs, epoch e at learning rate
    rates[e] (the schedule the run's main phase followed up to its best epoch), with nothing held out to watch."""
    fit_model = compile_for(task, model, regression, rates[0])
    history = run_dir / "history_refit.csv"
    history.unlink(missing_ok=True)
    print(f"[train] refit on train + validation: {len(rates)} epochs (the best epoch of the run), learning rates "
          f"{rates[0]:g} -> {rates[-1]:g}", flush=True)
    fit_model.fit(train_ds, epochs=len(rates), verbose=1 if sys.stdout.isatty() else 2, shuffle=False,
                  callbacks=[*task_callbacks(task, fit_model),
                             keras.callbacks.LearningRateScheduler(lambda epoch, lr: float(rates[epoch])),
                             keras.callbacks.CSVLogger(str(history))])


def targets_and_predictions(model, ds) -> tuple[dict, dict]:
    """({output: true values}, {output: predictions}) over every batch of `ds`, read in one pass."""
    truth: dict[str, list] = {}
    predicted: dict[str, list] = {}
    for inputs, targets, *_ in ds:  # (a mixup batch also carries sample weights)
        for key, value in targets.items():
            truth.setdefault(key, []).append(value.numpy())
        for key, value in model.predict_on_batch(inputs).items():
            predicted.setdefault(key, []).append(np.asarray(value))
    return ({key: np.concatenate(values) for key, values in truth.items()},
            {key: np.concatenate(values) for key, values in predicted.items()})
