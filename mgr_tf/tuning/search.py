"""A study run (`python -m mgr_tf.tune tuning/<study>.json`): trials, results, optionally the best model exported.

The run folder (tuning/runs/<study>/ by default) keeps the tuner state: rerunning the same command continues
the study (a larger --max-trials adds trials; finished trials are not re-run). It also holds the results table
(CSV and Markdown, best first, with reference rows for equal, published 1.5/0.8/0.8 and learned uncertainty
weights trained with the same budget), a plot of the objective against the weights, best.json and config.json.
The objective is the mean validation Spearman correlation over the three targets: unlike `val_loss`, it does
not change scale with the weights being tuned.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DataConfig, to_dict
from mgr_tf.core.io import write_json
from mgr_tf.data import dataset_info, make_dataset
from mgr_tf.data.spec import resolve
from mgr_tf.models import get_backbone
from mgr_tf.training import report as R
from mgr_tf.training.fit import task_callbacks
from mgr_tf.training.frozen import feature_datasets, features_of, split_at
from mgr_tf.training.runner import eval_split_of, evaluate_run, finish, run_config
from mgr_tf.tuning.hypermodel import build_and_compile, make_tuner
from mgr_tf.tuning.results import best_json, reference_rows, summary_header, trial_rows, write_results
from mgr_tf.tuning.space import row_setting, setting_configs
from mgr_tf.tuning.study import OBJECTIVE, Study, load_study


def export_best(study: Study, data: DataConfig, row: dict, run_dir: Path, name: str, root: str) -> dict:
    """Retrains a results row's configuration on train + validation, then evaluates and exports it like `mgr_tf.train`.

    The model is built and compiled as in the trials, fitted for the row's best epoch count, and handed to the
    training runner's tail (model.keras, the task's evaluation, report.json / report.md, export).

    Args:
        study: the study.
        data: the study's DataConfig (its validation split is merged into training).
        row: the results row (trial or reference) to retrain.
        run_dir: the study's run folder; the retrained run goes to run_dir/export_<name>.
        name: export name.
        root: export root folder.

    Returns:
        The report dict of the retrained run (with "export_dir").
    """
    full = dataclasses.replace(data, val_fraction=0.0)
    info = dataset_info(full)
    setting = row_setting(study, row)
    epochs = max(1, int(row.get("best_epoch") or study.epochs))
    model_cfg, train_cfg, regression = setting_configs(study, setting)
    train_cfg = dataclasses.replace(train_cfg, epochs=epochs)
    out = run_dir / f"export_{name}"
    out.mkdir(parents=True, exist_ok=True)
    command = f"python -m mgr_tf.tune (study {study.name}, row {row['trial']})"
    plan = dataclasses.replace(study.plan(full, model_cfg, train_cfg, regression), run_dir=out, export_name=name,
                               export_root=root, command=command)
    config = {**run_config(plan, info), "tune": {"study": study.to_json(), "row": row}}
    write_json(out / "config.json", config)
    encoder = get_backbone(study.model).encoder
    train_ds, frozen_train = make_dataset(full, "train"), None
    if encoder is not None:  # embed the clips once, fit the heads on the embeddings (as the trials did)
        probe, _ = build_and_compile(study, setting, full, info)
        frozen_train = features_of(split_at(probe, encoder.frozen_output)[0], resolve(full), "train")
        train_ds = feature_datasets(frozen_train, frozen_train, batch_size=full.batch_size, seed=full.seed)[0]
    model, fit_model = build_and_compile(study, setting, full, info, frozen_train=frozen_train)
    print(f"[tune] export: retraining {row['trial']} on train + validation ({info.counts['train']} clips) "
          f"for {epochs} epoch(s)", flush=True)
    started = time.time()
    task = plan.spec.task
    callbacks = [*task_callbacks(task, fit_model), keras.callbacks.CSVLogger(str(out / "history_main.csv"))]
    fit_model.fit(train_ds, epochs=epochs, verbose=1 if sys.stdout.isatty() else 2, shuffle=False,
                  callbacks=callbacks)
    train_seconds = time.time() - started
    if info.test_labelled:
        eval_split, reason = eval_split_of(info)
    else:  # there is no validation split left to fall back on
        eval_split, reason = "train", ("the test split has no labels and validation was merged into training: "
                                       "scores on the training data, optimistic")
    report = evaluate_run(plan, model, info, config, eval_ds=make_dataset(full, eval_split), eval_split=eval_split,
                          reason=reason, train_seconds=train_seconds)
    report = finish(plan, report, extra={"tune": {"study": study.name, "row": row, "retrained_on": "train + validation",
                                                  "epochs": epochs}})
    print(f"[tune] export: {eval_split}: {R.summary_line(task, report['metrics'])}", flush=True)
    return report


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


def run_study(args, command: str) -> int:
    """Runs (or continues) a study, writes its results and best.json, and exports the best model if asked.

    Args:
        args: the parsed flags of `python -m mgr_tf.tune`.
        command: the command line, recorded in the run folder's config.json.
    """
    study = load_study(args.study)
    if args.max_trials is not None and args.max_trials < 1:
        raise UserError(f"--max-trials must be at least 1, got {args.max_trials}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise FileNotFoundError(f"{args.data_dir}: --data-dir is not a folder")
    max_trials = args.max_trials or study.max_trials
    data = study.data_config(args.data_dir)
    study = study.bind(data)
    run_dir = Path(args.out or Path("tuning") / "runs" / study.name)
    role = os.environ.get("KERASTUNER_TUNER_ID", "") if "KERASTUNER_ORACLE_IP" in os.environ else ""
    is_worker = bool(role) and "chief" not in role
    if not is_worker:
        _check_run_folder(run_dir, study, data)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {"study": study.to_json(), "data": to_dict(data),
                                             "study_file": str(args.study), "command": command,
                                             "max_trials": max_trials, "keras_tuner": keras_tuner.__version__})

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
    best = best_json(study, rows, tuner, data)
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
        report = export_best(study, data, pool[0], run_dir, args.export, args.export_root)
        print(f"[tune] exported SavedModel: {report['export_dir']}")
    return 0
