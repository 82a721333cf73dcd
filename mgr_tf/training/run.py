"""The one train -> evaluate -> report -> export path, used by `python -m mgr_tf.train` and `mgr_tf.tune`.

Research topics it reproduces (see the README for copy-paste commands): genre recognition with LSTM, 2D CNN
and AST backbones; single-emotion regression with MSE + soft-rank Spearman loss (as in the two student
reports on this data); transfer learning from a genre model to an emotion regressor (frozen backbone, then
fine-tuned at a lower learning rate); multitask regression of valence, energy and danceability with fixed
weights (equal, or the published 1.5 / 0.8 / 0.8) or learned uncertainty weights (Kendall, Gal and Cipolla,
CVPR 2018, as used in report 1).

Everything a run needs to be reproduced is written to RUN_DIR/config.json; the metrics to
RUN_DIR/report.json (machine-readable) and RUN_DIR/report.md (readable) with plots beside them.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mgr_tf.cli import UserError
from mgr_tf.config import DataConfig, to_dict, write_json
from mgr_tf.tasks import get_task

@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained.

    Args:
        epochs: maximum epochs (early stopping may end sooner); with --init-from, epochs of the frozen phase
            plus the fine-tuning phase.
        learning_rate: Adam learning rate.
        patience: early stopping patience in epochs (best weights are restored).
        lr_patience: epochs without improvement before the learning rate is halved.
        spearman_weight: lambda of the emotion loss MSE + lambda * (1 - soft Spearman); 0 = MSE alone.
        spearman_method: soft rank used by the Spearman loss: pairwise (TF-Ranking style) or permutahedron
            (Blondel et al. 2020).
        spearman_strength: soft-rank regularisation (temperature / epsilon); smaller = closer to hard ranks.
        loss_weights: multitask weights of valence, energy, danceability (three numbers, or 'published' for
            1.5 0.8 0.8).
        learned_weights: learn the multitask weights (uncertainty weighting) instead of fixing them.
        init_from: a trained genre model (.keras file or run folder) whose backbone initialises an emotion model.
        freeze_epochs: with --init-from, epochs with the backbone frozen before fine-tuning.
        finetune_lr_factor: with --init-from, learning-rate factor of the fine-tuning phase.
        overfit_batch: train on a single batch only, to check that the model can memorise it.
    """

    epochs: int = 60
    learning_rate: float = 1e-3
    patience: int = 15
    lr_patience: int = 3
    spearman_weight: float = 1.0
    spearman_method: str = "permutahedron"
    spearman_strength: float = 0.1
    loss_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    learned_weights: bool = False
    init_from: str | None = None
    freeze_epochs: int = 4
    finetune_lr_factor: float = 0.1
    overfit_batch: bool = False


def default_run_name(data: DataConfig, family: str) -> str:
    """A deterministic run name, so rerunning the same command resumes the same run."""
    return f"{data.task}_{family}_{data.features}" + ("_beat" if data.beat else "")


def _read_history(csv_path: Path) -> dict[str, list[float]]:
    """The training history from the CSV log (survives resumes; the last row per epoch wins)."""
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


def _callbacks(run_dir: Path, phase: str, monitor: tuple[str, str], train: TrainConfig, extra=()):
    import keras

    key, mode = monitor
    verbose_progress = 1 if sys.stdout.isatty() else 2
    return [
        *extra,
        keras.callbacks.EarlyStopping(monitor=key, mode=mode, patience=train.patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ReduceLROnPlateau(monitor=key, mode=mode, factor=0.5, patience=train.lr_patience,
                                          min_lr=1e-6, verbose=1),
        keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / f"best_{phase}.keras"), monitor=key,
                                        mode=mode, save_best_only=True),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs" / phase)),
        keras.callbacks.CSVLogger(str(run_dir / f"history_{phase}.csv"), append=True),
        # double_checkpoint keeps the previous backup, used when a kill corrupted the latest one mid-write.
        keras.callbacks.BackupAndRestore(backup_dir=str(run_dir / "backup" / phase), double_checkpoint=True),
    ], verbose_progress


def check_flags(data: DataConfig, train: TrainConfig, model_config=None) -> None:
    """One clear line for flag combinations that cannot work."""
    from mgr_tf.models import get_backbone

    problem = get_task(data.task).check_train_config(train)
    backbone = get_backbone(model_config.family) if model_config is not None else None
    if not problem and backbone is not None and backbone.check_data:
        problem = backbone.check_data(data)
    if problem:
        raise UserError(problem)
    if len(train.loss_weights) != 3 or any(w < 0 for w in train.loss_weights):
        raise UserError(f"--loss-weights needs three non-negative numbers, got {list(train.loss_weights)}")
    if train.spearman_method not in ("pairwise", "permutahedron"):
        raise UserError(f"--spearman-method must be pairwise or permutahedron, got {train.spearman_method!r}")
    if train.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {train.epochs}")
    if data.mixup and train.learned_weights:
        raise UserError("--mixup does not combine with --learned-weights (the learned weighting ignores the sample "
                        "weights that carry the mixing weight)")


def build_for_run(data: DataConfig, model_config, train_config: TrainConfig, info):
    """The model of a run: a new one, or (with --init-from) new heads on a trained genre model's backbone."""
    from mgr_tf.models import build_model, load_keras_model, transfer_model

    if train_config.init_from:
        try:
            return transfer_model(load_keras_model(train_config.init_from), data.task, model_config)
        except ValueError as exc:
            raise UserError(f"--init-from {train_config.init_from}: {exc}") from None
    return build_model(model_config, data.task, num_bands=info.num_bands, frames=info.model_frames,
                       num_classes=info.num_classes, norm_mean=info.norm_mean, norm_std=info.norm_std,
                       class_names=info.class_names, window_hop=info.window_hop, db_bands=info.db_bands)


def fit_phases(model, data: DataConfig, train_config: TrainConfig, run_dir: Path, train_ds, val_ds,
               model_config=None) -> None:
    """Fits `model` in its phases, with the run's callbacks: main; or frozen then fine-tuned (--init-from);
    or, for a backbone with a frozen pretrained part, heads on its cached features then optional fine-tuning."""
    from mgr_tf.models import get_backbone, set_backbone_trainable

    task = get_task(data.task)
    backbone = get_backbone(model_config.family) if model_config is not None else None
    if backbone is not None and backbone.frozen_output and not train_config.init_from:
        _fit_on_frozen_features(model, backbone, data, model_config, train_config, run_dir, train_ds, val_ds)
        return
    phases = [("main", train_config.epochs, train_config.learning_rate)]
    if train_config.init_from:
        freeze = min(train_config.freeze_epochs, train_config.epochs)
        phases = [("frozen", freeze, train_config.learning_rate),
                  ("finetune", train_config.epochs - freeze,
                   train_config.learning_rate * train_config.finetune_lr_factor)]
    for phase, epochs, lr in phases:
        if epochs <= 0:
            continue
        if train_config.init_from:
            set_backbone_trainable(model, phase != "frozen")
        _fit(model, task, train_config, run_dir, phase, epochs, lr, train_ds, val_ds)


def _fit(model, task, train_config: TrainConfig, run_dir: Path, phase: str, epochs: int, lr: float, train_ds,
         val_ds) -> None:
    """One phase: compile for the task, then fit with the run's callbacks."""
    fit_model = task.compile(model, train_config, lr)
    callbacks, verbose = _callbacks(run_dir, phase, task.monitor, train_config, task.callbacks(fit_model))
    print(f"[train] phase {phase}: up to {epochs} epochs, learning rate {lr:g}", flush=True)
    fit_model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # the pipeline shuffles, seeded


def _fit_on_frozen_features(model, backbone, data: DataConfig, model_config, train_config: TrainConfig,
                            run_dir: Path, train_ds, val_ds) -> None:
    """Phase "frozen": the heads on features of the frozen part computed once; then "finetune" end to end."""
    import dataclasses

    from mgr_tf import data as D
    from mgr_tf.training.frozen import feature_datasets, split_at

    task = get_task(data.task)
    frozen, rest = split_at(model, backbone.frozen_output)
    # Whole clips in a fixed order (no mixup): each clip's features are computed once.
    clips = D.make_dataset(dataclasses.replace(data, mixup=0.0), "train", shuffle=False)
    features_train, features_val = feature_datasets(frozen, rest, clips, val_ds, batch_size=data.batch_size,
                                                    seed=data.seed)
    _fit(rest, task, train_config, run_dir, "frozen", train_config.epochs, train_config.learning_rate,
         features_train, features_val)
    epochs = backbone.fine_tune(model, model_config) if backbone.fine_tune else 0
    if epochs:
        _fit(model, task, train_config, run_dir, "finetune", epochs,
             train_config.learning_rate * train_config.finetune_lr_factor, train_ds, val_ds)


def train(data: DataConfig, model_config, train_config: TrainConfig, run_dir: Path, *,
          export_name: str | None = None, export_root: str = "exported_models", command: str = "",
          baseline: bool = False) -> dict:
    """Trains, evaluates, writes the report and (optionally) exports; returns the report dict.

    Args:
        data: what to train on.
        model_config: a `mgr_tf.models.ModelConfig`.
        train_config: how to train.
        run_dir: output folder (created; an interrupted run in it is resumed).
        export_name: export the model under this name (None = no export).
        export_root: export root folder.
        command: the command line, recorded in the report.
        baseline: also train the summary-statistics baseline on the same split and report its score.
    """
    import keras
    import tensorflow as tf

    from mgr_tf import data as D

    check_flags(data, train_config, model_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = D.dataset_info(data)  # may generate the corpus and build records: done before seeding, so a
    # first run (which generates) and later runs (which reuse) start training from the same random state
    keras.utils.set_random_seed(data.seed)
    tf.config.experimental.enable_op_determinism()
    config = run_config(data, model_config, train_config, info, command=command, export_name=export_name)
    write_json(run_dir / "config.json", config)
    model = build_for_run(data, model_config, train_config, info)

    train_ds = D.make_dataset(data, "train")
    val_ds = D.make_dataset(data, "validation")
    started = time.time()
    if train_config.overfit_batch:
        one_batch = train_ds.take(1).cache()
        fit_model = get_task(data.task).compile(model, train_config, train_config.learning_rate)
        fit_model.fit(one_batch, epochs=train_config.epochs, verbose=2, shuffle=False,
                      callbacks=[keras.callbacks.CSVLogger(str(run_dir / "history_main.csv"))])
        eval_ds, eval_split, reason = one_batch, "train", "--overfit-batch: the single training batch itself"
    else:
        fit_phases(model, data, train_config, run_dir, train_ds, val_ds, model_config)
        eval_split, reason = eval_split_of(info)
        eval_ds = val_ds if eval_split == "validation" else D.make_dataset(data, eval_split)
    train_seconds = time.time() - started
    return finish_run(model, run_dir, data, model_config, info, config, train_config, eval_ds=eval_ds, eval_split=eval_split,
                      reason=reason, train_seconds=train_seconds, command=command, export_name=export_name,
                      export_root=export_root, overfit=train_config.overfit_batch,
                      baseline=baseline and not train_config.overfit_batch and not is_baseline(model_config))


def is_baseline(model_config) -> bool:
    """True for the summary-statistics baseline itself (which needs no baseline beside it)."""
    from mgr_tf.training.baseline import BASELINE_FAMILY

    return model_config.family == BASELINE_FAMILY


def eval_split_of(info) -> tuple[str, str]:
    """(split, reason): the test split when it is labelled, else the validation split."""
    if info.test_labelled:
        return "test", "the test split is labelled"
    return "validation", "the test split has no labels"


def finish_run(model, run_dir: Path, data: DataConfig, model_config, info, config: dict, train_config, *, eval_ds,
               eval_split: str, reason: str, train_seconds: float, command: str, export_name: str | None,
               export_root: str = "exported_models", overfit: bool = False, baseline: bool = False,
               extra: dict | None = None) -> dict:
    """The tail every training shares: save, evaluate, report (json + md + plots), baseline, export.

    Args:
        model: the trained plain model (not a learned-weighting wrapper).
        run_dir: the run folder.
        data, model_config, info, config, train_config: the run's data config, model config, DatasetInfo,
            config dict and TrainConfig.
        eval_ds, eval_split, reason: what the model is scored on and why.
        train_seconds: wall time of the training.
        command: the command line, recorded in the report.
        export_name: export the model under this name (None = no export).
        export_root: export root folder.
        overfit: the run was an --overfit-batch check.
        baseline: train the summary-statistics baseline on the same split and add its score.
        extra: more keys for report.json.

    Returns:
        The report dict (also written to report.json / report.md).
    """
    from mgr_tf.training import report as R

    model.save(run_dir / "model.keras")
    report = evaluate_run(model, eval_ds, run_dir, data, model_config, info, eval_split=eval_split, reason=reason,
                          train_seconds=train_seconds, command=command, overfit=overfit)
    report["config_fingerprint"] = fingerprint(config)
    report.update(extra or {})
    if baseline:
        from mgr_tf.training.baseline import baseline_scores

        report["baseline"] = baseline_scores(data, run_dir, train_config)
    if export_name:
        from mgr_tf.serving.export import export_run

        report["export_dir"] = str(export_run(run_dir, name=export_name, root=export_root, metrics=report["metrics"]))
    write_json(run_dir / "report.json", report)
    (run_dir / "report.md").write_text(R.render_markdown(report))
    return report


def evaluate_run(model, eval_ds, run_dir: Path, data: DataConfig, model_config, info, *, eval_split: str,
                 reason: str, train_seconds: float, command: str, overfit: bool) -> dict:
    """Scores `model` on `eval_ds`, draws the plots into `run_dir` and returns the report dict."""
    from mgr_tf.training import report as R

    task = get_task(data.task)
    y_true, predictions = targets_and_predictions(model, eval_ds)
    history = {}
    for phase in ("frozen", "finetune", "main"):
        for key, values in _read_history(run_dir / f"history_{phase}.csv").items():
            history.setdefault(key, []).extend(values)
    name = default_run_name(data, model_config.family)
    metrics = task.evaluate(y_true, predictions, class_names=info.class_names, run_dir=run_dir,
                            title=f"{name} ({eval_split})")
    if history:
        R.plot_history(history, run_dir / "curves.png", title=name)
    report = {
        "title": f"{data.task} / {model_config.family.upper()} / {data.features}" + (" / beat-synced" if data.beat else ""),
        "task": data.task, "model": model_config.family, "eval_split": eval_split, "eval_split_reason": reason,
        "metrics": metrics, "headline": task.headline(metrics),
        "epochs_run": len(next(iter(history.values()), [])) if history else 0,
        "train_seconds": train_seconds, "history": history, "params": int(model.count_params()),
        "data_fingerprint": info.fingerprint, "counts": info.counts, "command": command,
        "class_names": list(info.class_names),
        "task_weights_plot": R.plot_task_weights(history, run_dir / "task_weights.png"),
    }
    if overfit:
        # Training-mode metrics of the last epoch: inference-mode ones lag behind through batch-norm statistics.
        report["overfit"] = {key: values[-1] for key, values in history.items() if not key.startswith("val_")}
    if "mean Spearman" in report["headline"]:
        report["mean_spearman"] = report["headline"]["mean Spearman"]
    return report


def run_config(data: DataConfig, model_config, train_config: TrainConfig, info, *, command: str,
               export_name: str | None) -> dict:
    """Everything needed to rerun a training run: written as config.json next to the run and its export."""
    from mgr_tf.feature_types import get_feature_type

    return {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(train_config),
            "features": to_dict(info.feature_config), "feature_type": {
                "name": data.features, "bands": info.num_bands,
                "description": get_feature_type(data.features).description},
            "task": data.task, "class_names": list(info.class_names), "vocabulary": list(info.vocabulary),
            "num_bands": info.num_bands, "frames": info.frames, "model_frames": info.model_frames,
            "data_fingerprint": info.fingerprint, "command": command, "export_name": export_name}


def targets_and_predictions(model, ds) -> tuple[dict, dict]:
    """({output: true values}, {output: predictions}) over every batch of `ds`, read in one pass."""
    import numpy as np

    truth: dict[str, list] = {}
    predicted: dict[str, list] = {}
    for inputs, targets, *_ in ds:  # (a mixup batch also carries sample weights)
        for key, value in targets.items():
            truth.setdefault(key, []).append(value.numpy())
        for key, value in model.predict_on_batch(inputs).items():
            predicted.setdefault(key, []).append(np.asarray(value))
    return ({key: np.concatenate(values) for key, values in truth.items()},
            {key: np.concatenate(values) for key, values in predicted.items()})


def fingerprint(obj) -> str:
    """A short, stable hash of a JSON-able object (configs, studies)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
