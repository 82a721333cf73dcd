"""The main job: `python -m mgr_tf.train` trains, evaluates, reports and exports one model.

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

import argparse
import csv
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mgr_tf.cli import UserError, add_dataclass_args, dataclass_from_args, quiet_tensorflow, run_cli
from mgr_tf.config import DataConfig, FeatureConfig, from_dict, task_outputs, to_dict, write_json
from mgr_tf.genres import EMOTIONS

PUBLISHED_WEIGHTS_ALIAS = "published"


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

    epochs: int = 12
    learning_rate: float = 1e-3
    patience: int = 5
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


# --------------------------------------------------------------------------------------------- compile
def compile_for_task(model, data: DataConfig, train: TrainConfig, learning_rate: float):
    """Compiles `model` for its task; returns the model to fit (a learned-weighting wrapper if asked)."""
    import keras

    from mgr_tf import losses as L
    from mgr_tf import metrics as M

    optimizer = keras.optimizers.Adam(learning_rate)
    losses = L.task_losses(data.task, spearman_weight=train.spearman_weight, method=train.spearman_method,
                           strength=train.spearman_strength)
    if data.task == "genre":
        model.compile(optimizer=optimizer, loss=losses,
                      metrics={"genre": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]})
        return model
    metrics = {t: [M.SpearmanMetric(name="spearman")] for t in task_outputs(data.task)}
    if train.learned_weights:
        weighted = L.build_learned_weighting_model(model, losses)
        weighted.compile(optimizer=optimizer, metrics=metrics)
        return weighted
    weights = dict(zip(EMOTIONS, train.loss_weights)) if data.task == "multitask" else None
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, metrics=metrics)
    return model


def monitor_for_task(task: str) -> tuple[str, str]:
    """Early-stopping quantity and mode: validation accuracy, or validation (mean) Spearman."""
    if task == "genre":
        return "val_accuracy", "max"
    return "val_mean_spearman", "max"


# --------------------------------------------------------------------------------------------- run
def load_keras_model(path: str | Path):
    import keras

    import mgr_tf.losses  # noqa: F401  (registers custom objects)
    import mgr_tf.metrics  # noqa: F401
    import mgr_tf.models  # noqa: F401

    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.exists():
        raise UserError(f"{path}: no trained model here (expected a .keras file or a run folder with model.keras)")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # corrupt or foreign files raise many types
        raise UserError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None


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


def train(data: DataConfig, model_config, train_config: TrainConfig, run_dir: Path, *,
          export_name: str | None = None, export_root: str = "exported_models", command: str = "") -> dict:
    """Trains, evaluates, writes the report and (optionally) exports; returns the report dict.

    Args:
        data: what to train on.
        model_config: a `mgr_tf.models.ModelConfig`.
        train_config: how to train.
        run_dir: output folder (created; an interrupted run in it is resumed).
        export_name: export the model under this name (None = no export).
        export_root: export root folder.
        command: the command line, recorded in the report.
    """
    import keras
    import tensorflow as tf

    from mgr_tf import data as D
    from mgr_tf import report as R
    from mgr_tf.models import build_model, set_backbone_trainable, transfer_model

    check_flags(data, train_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = D.dataset_info(data)  # may generate the corpus and build records: done before seeding, so a
    # first run (which generates) and later runs (which reuse) start training from the same random state
    keras.utils.set_random_seed(data.seed)
    tf.config.experimental.enable_op_determinism()
    config = run_config(data, model_config, train_config, info, command=command, export_name=export_name)
    write_json(run_dir / "config.json", config)

    if train_config.init_from:
        base = load_keras_model(train_config.init_from)
        try:
            model = transfer_model(base, data.task, model_config)
        except ValueError as exc:
            raise UserError(f"--init-from {train_config.init_from}: {exc}") from None
    else:
        model = build_model(model_config, data.task, num_bands=info.num_bands, frames=info.frames,
                            num_classes=info.num_classes, norm_mean=info.norm_mean, norm_std=info.norm_std,
                            class_names=info.class_names)

    train_ds = D.make_dataset(data, "train")
    val_ds = D.make_dataset(data, "validation")
    monitor = monitor_for_task(data.task)
    started = time.time()
    if train_config.overfit_batch:
        one_batch = train_ds.take(1).cache()
        fit_model = compile_for_task(model, data, train_config, train_config.learning_rate)
        fit_model.fit(one_batch, epochs=train_config.epochs, verbose=2, shuffle=False,
                      callbacks=[keras.callbacks.CSVLogger(str(run_dir / "history_main.csv"))])
        eval_ds, eval_split, reason = one_batch, "train", "--overfit-batch: the single training batch itself"
    else:
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
            fit_model = compile_for_task(model, data, train_config, lr)
            extra = extra_callbacks(fit_model, data)
            callbacks, verbose = _callbacks(run_dir, phase, monitor, train_config, extra)
            print(f"[train] phase {phase}: up to {epochs} epochs, learning rate {lr:g}", flush=True)
            fit_model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose,
                          shuffle=False)  # the pipeline shuffles, seeded
        if info.test_labelled:
            eval_ds, eval_split, reason = D.make_dataset(data, "test"), "test", "the test split is labelled"
        else:
            eval_ds, eval_split, reason = val_ds, "validation", "the test split has no labels"
    train_seconds = time.time() - started
    model.save(run_dir / "model.keras")
    report = _evaluate(model, eval_ds, run_dir, data, model_config, info, config,
                       eval_split=eval_split, reason=reason, train_seconds=train_seconds, command=command,
                       overfit=train_config.overfit_batch)
    if export_name:
        report["export_dir"] = str(export_run(run_dir, name=export_name, root=export_root, metrics=report["metrics"]))
    write_json(run_dir / "report.json", report)
    (run_dir / "report.md").write_text(R.render_markdown(report))
    return report


def _evaluate(model, eval_ds, run_dir: Path, data: DataConfig, model_config, info, config: dict, *,
              eval_split: str, reason: str, train_seconds: float, command: str, overfit: bool) -> dict:
    """Scores `model` on `eval_ds`, draws the plots into `run_dir` and returns the report dict."""
    import numpy as np

    from mgr_tf import report as R

    y_true, predictions = targets_and_predictions(model, eval_ds)
    history = {}
    for phase in ("frozen", "finetune", "main"):
        for key, values in _read_history(run_dir / f"history_{phase}.csv").items():
            history.setdefault(key, []).extend(values)

    metrics: dict = {}
    if data.task == "genre":
        metrics["genre"] = R.genre_metrics(y_true["genre"], predictions["genre"], info.class_names)
        R.plot_confusion_matrix(metrics["genre"]["confusion_matrix"], info.class_names,
                                run_dir / "confusion_matrix.png", title=f"{default_run_name(data, model_config.family)} ({eval_split})")
    else:
        for name in task_outputs(data.task):
            t, p = np.reshape(y_true[name], -1), np.reshape(predictions[name], -1)
            metrics[name] = R.emotion_metrics(t, p)
            R.plot_scatter(t, p, name, metrics[name], run_dir / f"scatter_{name}.png")
    if history:
        R.plot_history(history, run_dir / "curves.png", title=default_run_name(data, model_config.family))
    report = {
        "title": f"{data.task} / {model_config.family.upper()} / {data.features}" + (" / beat-synced" if data.beat else ""),
        "task": data.task, "model": model_config.family, "eval_split": eval_split, "eval_split_reason": reason,
        "metrics": metrics, "epochs_run": len(next(iter(history.values()), [])) if history else 0,
        "train_seconds": train_seconds, "history": history, "params": int(model.count_params()),
        "data_fingerprint": info.fingerprint, "config_fingerprint": fingerprint(config),
        "counts": info.counts, "command": command,
        "task_weights_plot": R.plot_task_weights(history, run_dir / "task_weights.png"),
    }
    if overfit:
        # Training-mode metrics of the last epoch: inference-mode ones lag behind through batch-norm statistics.
        report["overfit"] = {key: values[-1] for key, values in history.items() if not key.startswith("val_")}
    emotion_rhos = [metrics[n]["spearman"] for n in EMOTIONS if n in metrics]
    if emotion_rhos:
        report["mean_spearman"] = float(np.mean(emotion_rhos))
    return report


def extra_callbacks(fit_model, data: DataConfig) -> list:
    """Callbacks that add derived values to the logs (mean Spearman, learned weights) before others read them."""
    from mgr_tf import losses as L
    from mgr_tf import metrics as M

    extra = []
    if data.task != "genre":
        extra.append(M.MeanSpearman(task_outputs(data.task)))
    if hasattr(fit_model, "task_weights"):
        extra.append(L.LogTaskWeights())
    return extra


def run_config(data: DataConfig, model_config, train_config: TrainConfig, info, *, command: str,
               export_name: str | None) -> dict:
    """Everything needed to rerun a training run: written as config.json next to the run and its export."""
    return {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(train_config),
            "features": to_dict(FeatureConfig()), "task": data.task, "class_names": list(info.class_names),
            "num_bands": info.num_bands, "frames": info.frames, "data_fingerprint": info.fingerprint,
            "command": command, "export_name": export_name}


def targets_and_predictions(model, ds) -> tuple[dict, dict]:
    """({output: true values}, {output: predictions}) over every batch of `ds`, read in one pass."""
    import numpy as np

    truth: dict[str, list] = {}
    predicted: dict[str, list] = {}
    for inputs, targets in ds:
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


def check_flags(data: DataConfig, train: TrainConfig) -> None:
    if train.learned_weights and data.task != "multitask":
        raise UserError("--learned-weights needs --task multitask")
    if len(train.loss_weights) != 3 or any(w < 0 for w in train.loss_weights):
        raise UserError(f"--loss-weights needs three non-negative numbers, got {list(train.loss_weights)}")
    if train.init_from and data.task == "genre":
        raise UserError("--init-from transfers a genre model to an emotion task; it cannot be used with --task genre")
    if train.spearman_method not in ("pairwise", "permutahedron"):
        raise UserError(f"--spearman-method must be pairwise or permutahedron, got {train.spearman_method!r}")
    if train.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {train.epochs}")


# --------------------------------------------------------------------------------------------- export
def export_run(run_dir: Path, *, name: str | None = None, root: str = "exported_models", metrics=None) -> Path:
    """Exports a run's `model.keras` as the next SavedModel version, from a CPU-only process if a GPU is visible."""
    import json

    import tensorflow as tf

    from mgr_tf.export import export_model

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise UserError(f"{run_dir}: not a training run folder (no config.json)")
    config = json.loads(config_path.read_text())
    name = name or config.get("export_name") or run_dir.name
    if tf.config.list_physical_devices("GPU"):
        # An LSTM traced on a GPU is exported with cuDNN-only ops that CPU serving cannot run.
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
        out = subprocess.run([sys.executable, "-m", "mgr_tf.export", str(run_dir), "--name", name, "--root", root],
                             env=env, check=True, capture_output=True, text=True)
        return Path(out.stdout.strip().split()[-1])
    if metrics is None:
        report = run_dir / "report.json"
        metrics = json.loads(report.read_text())["metrics"] if report.exists() else {}
    model = load_keras_model(run_dir)
    data = from_dict(DataConfig, config["data"])
    return export_model(model, name, task=config["task"], class_names=config["class_names"],
                        num_bands=config["num_bands"], config=config, metrics=metrics, root=root,
                        waveform=not data.beat, feature_config=from_dict(FeatureConfig, config["features"]),
                        features=data.features)


# --------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    from mgr_tf.models import ModelConfig

    parser = argparse.ArgumentParser(
        prog="python -m mgr_tf.train",
        description="Train, evaluate, report and export a genre, emotion or multitask model. With no flags it "
                    "trains the default CNN genre model on the embedded synthetic corpus (generated on first "
                    "use) and exports it to exported_models/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--task", default="genre", choices=["genre", "valence", "energy", "danceability", "multitask"],
                        help="what to predict")
    parser.add_argument("--model", default="cnn", choices=["lstm", "cnn", "ast"], help="backbone family")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<task>_<model>_<features>[_beat]; "
                        "rerunning the same command resumes an interrupted run there)")
    parser.add_argument("--export", default="auto", metavar="NAME",
                        help="export name under --export-root ('auto' = the run name; 'none' = do not export)")
    parser.add_argument("--export-root", default="exported_models", help="export root folder")
    data_group = parser.add_argument_group("data")
    add_dataclass_args(data_group, DataConfig, skip=("task", "variable_length"))
    train_group = parser.add_argument_group("training")
    add_dataclass_args(train_group, TrainConfig, skip=("learning_rate", "loss_weights"))
    train_group.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float,
                             default=TrainConfig.learning_rate, help="Adam learning rate")
    train_group.add_argument("--loss-weights", nargs="+", default=None,
                             help="multitask weights of valence, energy, danceability: three numbers, or "
                                  "'published' for 1.5 0.8 0.8 (default: equal)")
    model_group = parser.add_argument_group("model")
    add_dataclass_args(model_group, ModelConfig, skip=("family",))
    return parser


def _parse_loss_weights(values) -> tuple[float, ...]:
    from mgr_tf.losses import PUBLISHED_WEIGHTS

    if values is None:
        return TrainConfig.loss_weights
    if values == [PUBLISHED_WEIGHTS_ALIAS]:
        return tuple(float(PUBLISHED_WEIGHTS[t]) for t in EMOTIONS)
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise UserError(f"--loss-weights: expected three numbers or 'published', got {' '.join(values)}") from None


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    from mgr_tf.models import ModelConfig

    data = dataclass_from_args(DataConfig, args, task=args.task, variable_length=args.model == "lstm")
    model_config = dataclass_from_args(ModelConfig, args, family=args.model)
    train_config = dataclass_from_args(TrainConfig, args, loss_weights=_parse_loss_weights(args.loss_weights))
    run_name = default_run_name(data, args.model)
    run_dir = Path(args.out or Path("runs") / run_name)
    export_name = None if args.export.lower() == "none" else (run_name if args.export == "auto" else args.export)
    if train_config.overfit_batch and args.export == "auto":
        export_name = None  # a model memorising one batch is a check, not something to serve
    command = "python -m mgr_tf.train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report = train(data, model_config, train_config, run_dir, export_name=export_name,
                   export_root=args.export_root, command=command.strip())
    print(f"\n[train] report: {run_dir / 'report.md'}")
    print(_summary_line(report))
    if report.get("export_dir"):
        print(f"[train] exported SavedModel: {report['export_dir']}")
    return 0


def _summary_line(report: dict) -> str:
    m = report["metrics"]
    if "genre" in m:
        return (f"[train] {report['eval_split']}: accuracy {m['genre']['accuracy']:.3f}, "
                f"macro F1 {m['genre']['macro_f1']:.3f}")
    return f"[train] {report['eval_split']}: " + ", ".join(f"{k} Spearman {v['spearman']:.3f}" for k, v in m.items())


if __name__ == "__main__":
    sys.exit(run_cli(main))
