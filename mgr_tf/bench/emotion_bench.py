"""Real emotion ratings: 5-fold cross-validation on Emotify's 9 GEMS targets, every row on the same folds.

Emotify (Aljanaki, Wiering and Veltkamp, "Studying emotion induced by music through a crowdsourcing game",
Information Processing & Management 2016; 400 clips of Magnatune music, published for research) gives, per clip,
the share of its 40-50 listeners who reported each of the nine GEMS emotions (amazement, solemnity, tenderness,
nostalgia, calmness, power, joyful_activation, tension, sadness). It is read from `../shared/realdata/emotify/`
(or `$MGR_TF_REALDATA/emotify`) and never copied into the repository. Its labels.csv goes through
`mgr_tf.ingest` once, as it is (genre and the nine targets in one pass; `n_raters` is left out as a column
outside [0, 1]), with musicnn's encoder input. Every row below is `mgr_tf.cv` (the same code as `train`) on the
same 5 folds (`--task regression`, stratified on quantile bins of the first target) and reports the mean over
folds of each target's Spearman and R², and the same over the pooled out-of-fold predictions.

Rows: the summary baseline (its regression form, beside every row); the from-scratch default (the CNN at its
defaults); `--model musicnn` (the default encoder, heads solved in closed form); and the research questions of
the reports this project reproduces, answered on real data: the soft-rank Spearman term vs MSE alone (CNN, and
gradient-trained heads on musicnn), one model per target vs one multitask model (musicnn; nine CNNs would take
45 minutes), equal vs learned vs keras-tuner-tuned loss weights, and transfer from a genre model (trained on the
same fold's training clips) vs from scratch.

Targets (issue 23): musicnn mean Spearman >= 0.60 and >= the baseline + 0.12; the from-scratch default >= the
baseline.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from mgr_tf.audio.ingest import ingest
from mgr_tf.audio.tracks import IngestConfig
from mgr_tf.bench import Row
from mgr_tf.bench.real_bench import emotify_dir
from mgr_tf.core.config import DataConfig, RegressionConfig, TrainConfig
from mgr_tf.core.paths import cache_home
from mgr_tf.data import split_ids
from mgr_tf.data.layout import write_genre_labels
from mgr_tf.models import get_backbone, model_config
from mgr_tf.training.cv import cross_validate
from mgr_tf.training.plan import Plan
from mgr_tf.training.runner import run as train_run
from mgr_tf.tuning.hypermodel import make_tuner
from mgr_tf.tuning.results import trial_rows
from mgr_tf.tuning.study import OBJECTIVE, parse_study

FOLDS = 5
GEMS = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation", "tension",
        "sadness")
TASK = "regression"
TUNE_TRIALS = 4  # a study of 4 trials per fold: 5 folds take about 30 minutes on 2 cores


def ingest_emotify(source: Path, root: Path) -> Path:
    """Ingests Emotify once (resumable): genres (lower-case names) and the nine GEMS targets from one CSV."""
    root.mkdir(parents=True, exist_ok=True)
    labels = root / "emotify_labels.csv"
    with open(source / "labels.csv", newline="") as fh, open(labels, "w", newline="") as out:
        rows = list(csv.DictReader(fh))
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "genre": row["genre"].lower()} for row in rows)
    ingest(source / "audio", [labels], root, IngestConfig(clip="pad", encoder="musicnn"), progress=False)
    return root


def _data(root: Path, family: str, **changes) -> DataConfig:
    spec = get_backbone(family)
    return DataConfig(data_dir=str(root), task=TASK, variable_length=spec.variable_length,
                      **{**spec.data_defaults, **changes})


def _cv(root: Path, name: str, family: str, quick: bool, *, data: dict | None = None, model: dict | None = None,
        train: dict | None = None, regression: dict | None = None, baseline: bool = False,
        folds: int = FOLDS) -> dict:
    """One row: `mgr_tf.cv` of a configuration (kept in the cache; a finished fold is not rerun)."""
    out = cache_home() / "bench" / f"emotify_emotion{'_quick' if quick else ''}" / name
    train_config = TrainConfig(**{**({"epochs": 2} if quick else {}), **(train or {})})
    plan = Plan(_data(root, family, **(data or {})), model_config(family, **(model or {})), train_config,
                RegressionConfig(**(regression or {})), run_dir=out, baseline=baseline,
                command=f"(bench emotion: {name})")
    started = time.time()
    result = cross_validate(plan, folds)
    print(f"[bench emotion] {name}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return result


def _scores(result: dict, model: str, folds_dir: Path, targets=GEMS) -> dict:
    """Per-target fold-mean Spearman and R² (from the fold reports), their means, and the pooled ones."""
    reports = [json.loads((folds_dir / f"fold_{k}" / "report.json").read_text()) for k in range(result["folds"])]
    if model == "summary baseline":
        metrics = [r["baseline"]["metrics"] for r in reports]
    else:
        metrics = [r["metrics"] for r in reports]
    per_target = {t: {"spearman": float(np.mean([m[t]["spearman"] for m in metrics])),
                      "r2": float(np.mean([m[t]["r2"] for m in metrics]))} for t in targets}
    fold_means = [np.mean([m[t]["spearman"] for t in targets]) for m in metrics]
    pooled = result.get("pooled", {}).get(model, {})
    return {"per_target": per_target, "spearman": float(np.mean(fold_means)), "spearman_std": float(np.std(fold_means)),
            "r2": float(np.mean([v["r2"] for v in per_target.values()])),
            "pooled_spearman": pooled.get("mean Spearman", float("nan")), "pooled_r2": pooled.get("mean R²", float("nan"))}


def _single_target_rows(root: Path, family: str, quick: bool, **settings) -> dict:
    """One model per target: a cv row per target; scores combined as for one multitask model."""
    per_target = {}
    spearman_folds = []
    for target in GEMS:
        result = _cv(root, f"{family}_single_{target}", family, quick, data={"targets": (target,)}, **settings)
        folds_dir = cache_home() / "bench" / f"emotify_emotion{'_quick' if quick else ''}" / f"{family}_single_{target}"
        scores = _scores(result, family, folds_dir, targets=(target,))
        per_target[target] = scores["per_target"][target]
        reports = [json.loads((folds_dir / f"fold_{k}" / "report.json").read_text()) for k in range(result["folds"])]
        spearman_folds.append([r["metrics"][target]["spearman"] for r in reports])
    fold_means = np.mean(spearman_folds, axis=0)
    return {"per_target": per_target, "spearman": float(np.mean(fold_means)), "spearman_std": float(np.std(fold_means)),
            "r2": float(np.mean([v["r2"] for v in per_target.values()])), "pooled_spearman": float("nan"),
            "pooled_r2": float("nan")}


def transfer_roots(root: Path, folds: int) -> list[Path]:
    """Per fold, a genre root whose train split is the regression fold's training clips (train + validation)
    and whose test split is its held-out clips: a genre model trained there never saw the fold's test clips.
    Arrays are hard links of the ingested ones."""
    genre_dir = root / "fma_genre_spectrograms"
    genres = {}
    for split in ("train", "test"):
        for line in (genre_dir / f"{split}_labels.txt").read_text().splitlines()[1:]:
            name, genre = line.split("\t")
            genres[name.split(".")[0]] = (split, genre)
    out = []
    for fold in range(folds):
        data = DataConfig(data_dir=str(root), task=TASK, cv_folds=folds, cv_fold=fold)
        held_out = set(split_ids(data, "test"))
        fold_root = cache_home() / "bench" / "emotify_transfer_roots" / f"fold_{fold}"
        done = fold_root / "done"
        if not done.is_file():
            shutil.rmtree(fold_root, ignore_errors=True)
            for split in ("train", "test"):
                (fold_root / "fma_genre_spectrograms" / split).mkdir(parents=True)
            rows = {"train": [], "test": []}
            for track_id, (stored, genre) in sorted(genres.items()):
                split = "test" if track_id in held_out else "train"
                for source in (genre_dir / stored).glob(f"{track_id}.fused.full.npy*"):
                    os.link(source, fold_root / "fma_genre_spectrograms" / split / source.name)
                rows[split].append((track_id, genre))
            for split, pairs in rows.items():
                write_genre_labels(fold_root / "fma_genre_spectrograms" / f"{split}_labels.txt", pairs)
            shutil.copy(genre_dir / "genres.txt", fold_root / "fma_genre_spectrograms" / "genres.txt")
            for extra in root.glob("*.json"):
                if extra.name.startswith("feature"):
                    shutil.copy(extra, fold_root / extra.name)
            done.write_text("ok\n")
        out.append(fold_root)
    return out


def tuned_rows(root: Path, quick: bool, folds: int) -> dict:
    """Keras-tuner-tuned loss weights (gradient heads on frozen musicnn embeddings): per fold a random study of
    `TUNE_TRIALS` trials on that fold's training and validation clips (the fast path: embed once, tune the
    heads), then the best weights trained and scored on the fold's held-out clips."""
    base = cache_home() / "bench" / f"emotify_emotion{'_quick' if quick else ''}" / "musicnn_tuned"
    study = parse_study({"name": "emotify_gems", "model": "musicnn", "features": "musicnn", "beat": False, "oracle": "random",
                         "max_trials": 2 if quick else TUNE_TRIALS, "epochs": 2 if quick else 60,
                         "batch_size": 8, "references": False,
                         "train_overrides": {"head": "gradient", "spearman_weight": 0.0},
                         "search_space": {"weights": {"type": "simplex"}}}, "bench emotion")
    reports = []
    for fold in range(folds):
        fold_dir = base / f"fold_{fold}"
        done = fold_dir / "report.json"
        if not done.is_file():
            data = dataclasses.replace(study.data_config(str(root)), cv_folds=folds, cv_fold=fold)
            bound = study.bind(data)
            tuner = make_tuner(bound, data, fold_dir / "study", bound.max_trials)
            tuner.search(verbose=0)
            best = max(trial_rows(bound, tuner, fold_dir / "study"), key=lambda row: row[OBJECTIVE])
            plan = Plan(_data(root, "musicnn", cv_folds=folds, cv_fold=fold), model_config("musicnn"),
                        TrainConfig(**({"epochs": 2} if quick else {}), head="gradient"),
                        RegressionConfig(spearman_weight=0.0,
                                         loss_weights={t: best[f"w_{t}"] for t in bound.targets}),
                        run_dir=fold_dir, baseline=False, command="(bench emotion: musicnn tuned weights)")
            train_run(plan)
        reports.append(json.loads(done.read_text()))
    return {**_fold_scores(reports),
            "weights": [json.loads((base / f"fold_{k}" / "config.json").read_text())["regression"]["loss_weights"]
                        for k in range(folds)]}


def transfer_rows(root: Path, quick: bool, folds: int) -> dict:
    """The default CNN regressor initialised from a genre CNN trained on the same fold's training clips (frozen
    backbone, then fine-tuned: `--init-from`), on the same folds as every other row."""
    base = cache_home() / "bench" / f"emotify_emotion{'_quick' if quick else ''}" / "cnn_transfer"
    epochs = {"epochs": 2} if quick else {}
    reports = []
    for fold, genre_root in enumerate(transfer_roots(root, folds)):
        fold_dir = base / f"fold_{fold}"
        if not (fold_dir / "report.json").is_file():
            genre_dir = base / f"genre_{fold}"
            if not (genre_dir / "report.json").is_file():
                train_run(Plan(DataConfig(data_dir=str(genre_root), task="genre"), model_config("cnn"), TrainConfig(**epochs),
                         RegressionConfig(), run_dir=genre_dir, baseline=False, command="(bench emotion: genre CNN)"))
            train_run(Plan(_data(root, "cnn", cv_folds=folds, cv_fold=fold), model_config("cnn"),
                     TrainConfig(**epochs, init_from=str(genre_dir)), RegressionConfig(), run_dir=fold_dir,
                     baseline=False, command="(bench emotion: CNN from the genre CNN)"))
        reports.append(json.loads((fold_dir / "report.json").read_text()))
    return _fold_scores(reports)


def _fold_scores(reports: list[dict]) -> dict:
    """Per-target and mean fold scores of rows run outside `mgr_tf.cv` (no pooled predictions)."""
    fold_means = [np.mean([r["metrics"][t]["spearman"] for t in GEMS]) for r in reports]
    per_target = {t: {"spearman": float(np.mean([r["metrics"][t]["spearman"] for r in reports])),
                      "r2": float(np.mean([r["metrics"][t]["r2"] for r in reports]))} for t in GEMS}
    return {"per_target": per_target, "spearman": float(np.mean(fold_means)), "spearman_std": float(np.std(fold_means)),
            "r2": float(np.mean([v["r2"] for v in per_target.values()])), "pooled_spearman": float("nan"),
            "pooled_r2": float("nan")}


# (row name, family, settings, question): the configurations of the table, in order.
CONFIGS = (
    ("musicnn", "musicnn", {}, "default: heads solved in closed form"),
    ("cnn", "cnn", {"baseline": True}, "from-scratch default (MSE + soft-rank Spearman, equal weights)"),
    ("cnn_mse", "cnn", {"regression": {"spearman_weight": 0.0}}, "Spearman term: CNN on MSE alone"),
    ("cnn_learned", "cnn", {"regression": {"learned_weights": True}}, "weights: CNN with learned weights"),
    ("musicnn_gradient", "musicnn", {"train": {"head": "gradient"}},
     "Spearman term: gradient heads on musicnn, MSE + Spearman"),
    ("musicnn_gradient_mse", "musicnn", {"train": {"head": "gradient"}, "regression": {"spearman_weight": 0.0}},
     "Spearman term: gradient heads on musicnn, MSE alone (equal weights)"),
    ("musicnn_learned", "musicnn", {"train": {"head": "gradient"}, "regression": {"spearman_weight": 0.0,
                                                                                  "learned_weights": True}},
     "weights: gradient heads on musicnn, learned weights"),
)


def run(quick: bool) -> list[Row]:
    source = emotify_dir()
    if source is None:
        print("[bench emotion] skipped: no real data here (expected ../shared/realdata/emotify/ with labels.csv "
              "and audio/, or MGR_TF_REALDATA)", file=sys.stderr)
        return []
    root = ingest_emotify(source, cache_home() / "bench" / "emotify-targets")
    folds = 2 if quick else FOLDS
    base_dir = cache_home() / "bench" / f"emotify_emotion{'_quick' if quick else ''}"
    scores, questions = {}, {}
    for name, family, settings, question in CONFIGS:
        result = _cv(root, name, family, quick, folds=folds, **settings)
        scores[name] = _scores(result, family, base_dir / name)
        questions[name] = question
        if settings.get("baseline"):
            scores["summary baseline"] = _scores(result, "summary baseline", base_dir / name)
            questions["summary baseline"] = "baseline: summary statistics, heads solved in closed form"
    scores["musicnn_tuned"] = tuned_rows(root, quick, folds)
    questions["musicnn_tuned"] = "weights: gradient heads on musicnn, keras-tuner weights (per fold)"
    scores["cnn_transfer"] = transfer_rows(root, quick, folds)
    questions["cnn_transfer"] = "transfer: CNN from a genre CNN of the same fold's training clips"
    if not quick:
        scores["musicnn_single"] = _single_target_rows(root, "musicnn", quick)
        questions["musicnn_single"] = "one model per target: musicnn, closed form"
    base = scores["summary baseline"]["spearman"]
    targets = {"musicnn": ">= 0.60 and >= baseline + 0.12", "cnn": ">= baseline"}
    rows = []
    for name, s in scores.items():
        rows.append(Row("emotion", f"Emotify GEMS {folds}-fold mean Spearman, {name} ({questions[name]})",
                        s["spearman"], "Spearman", ratio=s["spearman"] / base, baseline=f"summary baseline ({base:.3f})",
                        target=targets.get(name, ""),
                        extra={"minus_baseline": s["spearman"] - base, "spearman_std": s["spearman_std"],
                               "r2": s["r2"], "pooled_spearman": s["pooled_spearman"], "pooled_r2": s["pooled_r2"],
                               "per_target": s["per_target"], **({"weights": s["weights"]} if "weights" in s else {})}))
    return rows
