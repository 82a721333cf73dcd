"""The one training path: model, then the baseline beside it, then the export, shared by `train`, `cv` and `tune`.

Research topics it reproduces (see docs/training.md for copy-paste commands): genre recognition with LSTM, 2D
CNN and AST backbones; single-emotion regression with MSE + soft-rank Spearman loss (as in the two student
reports on this data); transfer learning from a genre model to an emotion regressor (frozen backbone, then
fine-tuned at a lower learning rate); multitask regression of valence, energy and danceability with fixed
weights (equal, or the published 1.5 / 0.8 / 0.8) or learned uncertainty weights (Kendall, Gal and Cipolla,
CVPR 2018, as used in report 1).

`run(plan)`: `fit_and_evaluate` (fit, save model.keras, score, plots) -> the baseline on the same split ->
export -> report.json / report.md. Everything a run needs to be reproduced is written to RUN_DIR/config.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import to_dict
from mgr_tf.core.io import write_json, write_text
from mgr_tf.data import dataset_info, make_dataset, split_ids
from mgr_tf.data.spec import DataSpec
from mgr_tf.models import get_backbone
from mgr_tf.models.build import build_model, load_keras_model, transfer_model
from mgr_tf.serving.export import check_interface, export_run, served_config
from mgr_tf.training import distributed, rundir
from mgr_tf.training import report as R
from mgr_tf.training.baseline import baseline_plan, is_baseline, wide_plan
from mgr_tf.training.blend import TRAIN_ONLY_MODEL, blend_run
from mgr_tf.training.fit import best_epoch, compile_for, fit_phases, read_history, refit_phase, splits_at, targets_and_predictions
from mgr_tf.training.frozen import CHUNK, features_of, split_at
from mgr_tf.training.plan import Plan, blends, check, default_run_name

PHASES = ("frozen", "finetune", "main")


@dataclass
class Trained:
    """A fitted model and its report (before the baseline and the export are added)."""

    model: keras.Model
    report: dict


def run(plan: Plan) -> dict:
    """Trains, evaluates, trains the baseline beside the model, exports; returns the report dict.

    Args:
        plan: the run (`mgr_tf.training.plan.Plan`).

    Returns:
        The report dict (also written to report.json / report.md).
    """
    # Distributed: the strategy comes first; a worker other than the chief runs in a scratch folder (discarded).
    plan = distributed.for_this_task(check(plan))
    try:
        trained = fit_and_evaluate(plan)
        report = finish(plan, trained.report)
    finally:
        rundir.release(plan.run_dir)
    distributed.discard_scratch(plan)
    return report


def fit_and_evaluate(plan: Plan) -> Trained:
    """Fits the plan's model (resuming an interrupted run), saves it, scores it and draws the plots."""
    plan = check(plan)
    spec = plan.spec
    rundir.claim(plan.run_dir, rundir.identity(plan))  # one process and one configuration per run folder
    info = dataset_info(spec)  # may generate the corpus and build records: done before seeding, so a
    # first run (which generates) and later runs (which reuse) start training from the same random state
    keras.utils.set_random_seed(plan.data.seed)
    tf.config.experimental.enable_op_determinism()
    config = run_config(plan, info)
    if plan.export_name:  # before training: an export that would change what its name serves is refused now
        check_interface(Path(plan.export_root) / plan.export_name, served_config(config))
    write_json(plan.run_dir / "config.json", config)
    if plan.model_reason:
        print(f"[train] model {plan.model.family}: {plan.model_reason}", flush=True)
    model = build_for_run(plan, info)
    train_ds = make_dataset(spec, "train")
    val_ds = make_dataset(spec, "validation")
    started = time.time()
    notes = {}
    if plan.train.overfit_batch:
        one_batch = train_ds.take(1).cache()
        fit_model = compile_for(spec.task, model, plan.regression, plan.train.learning_rate)
        fit_model.fit(one_batch, epochs=plan.train.epochs, verbose=2, shuffle=False,
                      callbacks=[keras.callbacks.CSVLogger(str(plan.run_dir / "history_main.csv"))])
        eval_ds, eval_split, reason = one_batch, "train", "--overfit-batch: the single training batch itself"
    else:
        fit = fit_phases if plan.train.distribute == "none" else distributed.fit_phases
        notes = fit(model, spec, plan.model, plan.train, plan.regression, plan.run_dir, train_ds, val_ds) or {}
        eval_split, reason = eval_split_of(info)
        eval_ds = val_ds if eval_split == "validation" else make_dataset(spec, eval_split)
    if plan.train.refit:
        model.save(plan.run_dir / TRAIN_ONLY_MODEL)  # what the blend weighs on the validation clips
        model, notes["refit"] = refit(plan)
    report = evaluate_run(plan, model, info, config, eval_ds=eval_ds, eval_split=eval_split, reason=reason,
                          train_seconds=time.time() - started)
    report.update(notes)
    return Trained(model, report)


def refit(plan: Plan):
    """(`--refit`) A fresh model trained on train + validation for the run's best number of epochs, at the
    learning rates the run followed up to then; returns (model, notes for the report)."""
    history = read_history(plan.run_dir / "history_main.csv")
    epochs = best_epoch(history, plan.spec.task, plan.train)
    rates = history.get("learning_rate", [plan.train.learning_rate] * epochs)[:epochs]
    joined = dataclasses.replace(plan, data=dataclasses.replace(plan.data, val_fraction=0.0))
    info = dataset_info(joined.spec)  # normalisation statistics of the joined clips
    keras.utils.set_random_seed(plan.data.seed)
    model = build_for_run(joined, info)
    refit_phase(model, joined.spec.task, plan.regression, plan.run_dir, rates, make_dataset(joined.spec, "train"))
    return model, {"epochs": epochs, "clips": int(info.counts["train"]), "learning_rates": rates}


def build_for_run(plan: Plan, info):
    """The model of a run: a new one, or (with --init-from) new heads on a trained genre model's backbone."""
    task = plan.spec.task
    if plan.train.init_from:
        try:
            return transfer_model(load_keras_model(plan.train.init_from), task, plan.model)
        except ValueError as exc:
            raise UserError(f"--init-from {plan.train.init_from}: {exc}") from None
    return build_model(plan.model, task, num_bands=info.num_bands, frames=info.model_frames,
                       num_classes=info.num_classes, norm_mean=info.norm_mean, norm_std=info.norm_std,
                       class_names=info.class_names, window_hop=info.window_hop, db_bands=info.db_bands)


def eval_split_of(info) -> tuple[str, str]:
    """(split, reason): the test split when it is labelled, else the validation split."""
    if info.test_labelled:
        return "test", "the test split is labelled"
    return "validation", "the test split has no labels"


def evaluate_run(plan: Plan, model, info, config: dict, *, eval_ds, eval_split: str, reason: str,
                 train_seconds: float) -> dict:
    """Saves `model` as model.keras, scores it on `eval_ds`, draws the plots and returns the report dict.

    Args:
        plan: the run.
        model: the trained plain model (not a learned-weighting wrapper).
        info: the data's `DatasetInfo`.
        config: the run's config dict (its fingerprint goes into the report).
        eval_ds, eval_split, reason: what the model is scored on and why.
        train_seconds: wall time of the training.
    """
    run_dir, data, spec = plan.run_dir, plan.data, plan.spec
    model.save(run_dir / "model.keras")
    frozen_layer = get_backbone(plan.model.family).frozen_layer
    if frozen_layer and not plan.train.overfit_batch and splits_at(model, frozen_layer):
        # The frozen part's features of the scored clips, from the cache when it has them (cross-validation and
        # the benchmarks score the same clips with the same encoder again and again).
        frozen, rest = split_at(model, frozen_layer)
        features = features_of(frozen, spec, eval_split, chunk=CHUNK)
        y_true = features.y
        predictions = {k: np.asarray(v) for k, v in rest.predict(features.x, batch_size=256, verbose=0).items()}
    else:
        y_true, predictions = targets_and_predictions(model, eval_ds)
    ids = [] if plan.train.overfit_batch else split_ids(spec, eval_split)
    if len(ids) == len(next(iter(y_true.values()))):
        R.write_predictions(run_dir / R.PREDICTIONS, spec.task, ids, y_true, predictions, info.class_names)
    history = run_history(run_dir)
    name = default_run_name(data, plan.model.family)
    metrics = R.evaluate(spec.task, y_true, predictions, class_names=info.class_names, run_dir=run_dir,
                         title=f"{name} ({eval_split})")
    if history:
        R.plot_history(history, run_dir / "curves.png", title=name)
    report = {
        "title": f"{data.task} / {plan.model.family.upper()} / {data.features}" + (" / beat-synced" if data.beat else ""),
        "task": data.task, "model": plan.model.family, "eval_split": eval_split, "eval_split_reason": reason,
        "metrics": metrics, "headline": R.headline(spec.task, metrics),
        "epochs_run": len(next(iter(history.values()), [])) if history else 0,
        "train_seconds": train_seconds, "history": history, "params": int(model.count_params()),
        "data_fingerprint": info.fingerprint, "counts": info.counts, "command": plan.command,
        "class_names": list(info.class_names), "targets": [] if spec.task.classification else list(spec.task.outputs),
        "task_weights_plot": R.plot_task_weights(history, run_dir / "task_weights.png"),
        "config_fingerprint": fingerprint(config),
        "model_reason": plan.model_reason,
    }
    if plan.train.overfit_batch:
        # Training-mode metrics of the last epoch: inference-mode ones lag behind through batch-norm statistics.
        report["overfit"] = {key: values[-1] for key, values in history.items() if not key.startswith("val_")}
    if "mean Spearman" in report["headline"]:
        report["mean_spearman"] = report["headline"]["mean Spearman"]
    return report


def finish(plan: Plan, report: dict, *, extra: dict | None = None) -> dict:
    """The tail every run shares: the baseline on the same split, the export, report.json and report.md.

    Args:
        plan: the run (its `baseline` and `export_name` say what to add).
        report: the model's report from `evaluate_run`.
        extra: more keys for report.json.
    """
    report = {**report, **(extra or {})}
    if plan.baseline and not plan.train.overfit_batch and not is_baseline(plan):
        print("[train] baseline: summary statistics + linear head on the same split", flush=True)
        base_plan = baseline_plan(plan)
        base = finish(base_plan, fit_and_evaluate(base_plan).report)
        if blends(plan):  # the served model becomes the model blended with the wide statistics model
            print("[train] wide statistics (every per-band statistic + linear head), the blend's partner", flush=True)
            partner = wide_plan(plan)
            report = blend_run(plan, report, partner, finish(partner, fit_and_evaluate(partner).report))
        report["baseline"] = {key: base[key] for key in ("metrics", "headline", "eval_split", "train_seconds",
                                                         "epochs_run", "params", "head_fit") if key in base}
    write_report(plan.run_dir, report)  # first: a failed export keeps the run's report
    if plan.export_name:
        report["export_dir"] = str(export_run(plan.run_dir, name=plan.export_name, root=plan.export_root,
                                              metrics=report["metrics"]))
        write_report(plan.run_dir, report)
    return report


def write_report(run_dir: Path, report: dict) -> None:
    """report.json and report.md of a run (each written atomically)."""
    write_json(run_dir / "report.json", report)
    write_text(run_dir / "report.md", R.render_markdown(report))


def run_history(run_dir: Path) -> dict[str, list[float]]:
    """The epochs of every phase of a run folder, in phase order."""
    history: dict[str, list[float]] = {}
    for phase in PHASES:
        for key, values in read_history(run_dir / f"history_{phase}.csv").items():
            history.setdefault(key, []).extend(values)
    return history


def run_config(plan: Plan, info) -> dict:
    """Everything needed to rerun a training run: written as config.json next to the run and its export."""
    spec: DataSpec = plan.spec
    return {"data": to_dict(plan.data), "model": to_dict(plan.model), "train": to_dict(plan.train),
            "regression": to_dict(plan.regression), "features": to_dict(info.feature_config),
            "feature_type": {"name": plan.data.features, "bands": info.num_bands,
                             "description": spec.feature.description},
            "task": plan.data.task, "class_names": list(info.class_names), "vocabulary": list(info.vocabulary),
            "targets": [] if spec.task.classification else list(spec.task.outputs), "data_targets": list(spec.targets),
            "num_bands": info.num_bands, "frames": info.frames, "model_frames": info.model_frames,
            "data_fingerprint": info.fingerprint, "command": plan.command, "export_name": plan.export_name,
            "model_reason": plan.model_reason, "blend": blends(plan)}


def fingerprint(obj) -> str:
    """A short, stable hash of a JSON-able object (configs, studies)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
