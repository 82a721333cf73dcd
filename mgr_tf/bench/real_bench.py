"""Real music: 5-fold cross-validation on Emotify (400 clips, 4 genres) of every backbone at its defaults.

Emotify (Aljanaki, Wiering and Veltkamp, "Studying emotion induced by music through a crowdsourcing
game", Information Processing & Management 2016; music from Magnatune, published for research) is read
from `../shared/realdata/emotify/` (or `$MGR_TF_REALDATA/emotify`); it is never copied into the
repository. The audio goes through `mgr_tf.ingest` once, with the genres as lower-case names (an open
label set of 4, not FMA's vocabulary), with musicnn's encoder input (`--encoder musicnn`), into the cache;
then `mgr_tf.cv` runs the summary baseline, the LSTM, CNN and AST, and the pretrained musicnn encoder (heads
on frozen MSD_musicnn embeddings) at their default settings on the same folds, as `mgr_tf.cv` runs them: the
from-scratch models served blended with each fold's wide statistics model (their rows; the model alone in `extra`). A
second table times one training epoch of the default CNN with and without patch training on the same full-length
clips.

Targets: CNN >= baseline + 0.05 accuracy; LSTM and AST >= baseline; musicnn >= baseline + 0.10 (issue 14);
patch epoch >= 3x faster.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
from pathlib import Path

import keras

from mgr_tf.audio.ingest import ingest
from mgr_tf.audio.tracks import IngestConfig
from mgr_tf.bench import Row
from mgr_tf.core.config import DataConfig, RegressionConfig, TrainConfig, to_dict
from mgr_tf.core.paths import cache_home
from mgr_tf.data import dataset_info, make_dataset
from mgr_tf.data.spec import resolve
from mgr_tf.models import get_backbone, model_config
from mgr_tf.models.build import build_model
from mgr_tf.tasks import get_task
from mgr_tf.training.baseline import BASELINE_FAMILY, baseline_plan
from mgr_tf.training.cv import cross_validate
from mgr_tf.training.fit import compile_for
from mgr_tf.training.plan import Plan
from mgr_tf.training.runner import fingerprint

FOLDS = 5
MODELS = ("summary", "cnn", "lstm", "ast", "musicnn")  # the first is the baseline (trained as in every report)


def emotify_dir() -> Path | None:
    """The Emotify folder (audio/ + labels.csv), or None when this machine has none."""
    candidates = [Path(os.environ["MGR_TF_REALDATA"]) / "emotify"] if os.environ.get("MGR_TF_REALDATA") else []
    here = Path(__file__).resolve()
    candidates += [parent / "shared" / "realdata" / "emotify" for parent in here.parents]
    candidates += [Path.cwd().parent / "shared" / "realdata" / "emotify"]
    return next((c for c in candidates if (c / "labels.csv").is_file() and (c / "audio").is_dir()), None)


def ingest_emotify(source: Path, root: Path) -> Path:
    """Ingests Emotify once (resumable) with lower-case genre names; returns the dataset root."""
    root.mkdir(parents=True, exist_ok=True)
    labels = root / "emotify_labels.csv"
    with open(source / "labels.csv") as fh, open(labels, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "genre"])
        for row in csv.DictReader(fh):
            writer.writerow([row["path"], row["genre"].lower()])
    ingest(source / "audio", [labels], root, IngestConfig(clip="pad", encoder="musicnn"), progress=False)
    return root


def run(quick: bool) -> list[Row]:
    source = emotify_dir()
    if source is None:
        print("[bench real] skipped: no real data here (expected ../shared/realdata/emotify/ with labels.csv "
              "and audio/, or MGR_TF_REALDATA)", file=sys.stderr)
        return []

    started = time.time()
    root = ingest_emotify(source, cache_home() / "bench" / "emotify-musicnn")
    print(f"[bench real] Emotify ready in {root} ({time.time() - started:.0f} s)", file=sys.stderr)
    folds = 2 if quick else FOLDS
    rows: list[Row] = []
    results, alone = {}, {}
    for family in MODELS:
        spec = get_backbone(family)
        data = DataConfig(data_dir=str(root), variable_length=spec.variable_length, **spec.data_defaults)
        # As `mgr_tf.cv` runs it by default: with the baseline beside each fold, so a from-scratch model is served
        # blended with it (`--blend auto`); the folder is named by the settings, so changed defaults rerun.
        plan = Plan(data, model_config(family), TrainConfig(), baseline=family != BASELINE_FAMILY,
                    command=f"python -m mgr_tf.cv {root} --folds {folds} --model {family}")
        if family == BASELINE_FAMILY:  # the baseline as every report trains it
            plan = dataclasses.replace(baseline_plan(plan), command=plan.command)
        if quick:
            plan = dataclasses.replace(plan, train=dataclasses.replace(plan.train, epochs=2))
        settings = fingerprint([to_dict(plan.data), to_dict(plan.model), to_dict(plan.train), plan.baseline])[:8]
        out = cache_home() / "bench" / f"emotify_cv{folds}{'_quick' if quick else ''}_{family}_{settings}"
        result = cross_validate(dataclasses.replace(plan, run_dir=out), folds)
        results[family] = result["summary"][family]
        if f"{family} alone" in result["summary"]:
            alone[family] = result["summary"][f"{family} alone"]["accuracy"]
    base = results["summary"]["accuracy"]["mean"]
    for family, summary in results.items():
        target = {"cnn": ">= baseline + 0.05", "lstm": ">= baseline", "ast": ">= baseline",
                  "musicnn": ">= baseline + 0.10"}.get(family, "")
        rows.append(Row("real", f"Emotify {folds}-fold accuracy, {family} (defaults)", summary["accuracy"]["mean"],
                        "accuracy", ratio=summary["accuracy"]["mean"] / base, baseline=f"summary baseline ({base:.3f})",
                        target=target, extra={"minus_baseline": summary["accuracy"]["mean"] - base,
                                              "accuracy_std": summary["accuracy"]["std"],
                                              "macro_f1": summary["macro F1"]["mean"],
                                              "macro_f1_std": summary["macro F1"]["std"],
                                              "seconds_per_fold": summary["seconds"]["mean"],
                                              **({"blended": True, "alone_accuracy": alone[family]["mean"],
                                                  "alone_accuracy_std": alone[family]["std"]}
                                                 if family in alone else {})}))
    rows += patch_epoch_rows(root, quick)
    return rows


def patch_epoch_rows(root: Path, quick: bool) -> list[Row]:
    """One CNN training epoch on full-length clips: whole clips vs random patches, side by side.

    Measured on the default feature type and on the fused arrays (the defaults before patch training).
    """
    rows: list[Row] = []
    default = DataConfig(data_dir=str(root))
    for features in dict.fromkeys((default.features, "fused")):
        rows += _patch_epoch(dataclasses.replace(default, features=features), quick)
    return rows


def _patch_epoch(patched, quick: bool) -> list[Row]:
    if not resolve(patched).patch:
        patched = dataclasses.replace(patched, patch_frames=256)
    whole = dataclasses.replace(patched, patch_frames=0)
    seconds = {}
    for name, data in (("whole clips", whole), ("patches", patched)):
        info = dataset_info(data)
        model = build_model(model_config("cnn"), get_task("genre"), num_bands=info.num_bands, frames=info.model_frames,
                            num_classes=info.num_classes, norm_mean=info.norm_mean, norm_std=info.norm_std,
                            window_hop=info.window_hop, db_bands=info.db_bands)
        fit = compile_for(get_task("genre"), model, RegressionConfig(), 1e-3)
        ds = make_dataset(data, "train")
        fit.fit(ds, epochs=1, verbose=0)  # warm-up: tracing and the cache
        times = []
        for _ in range(1 if quick else 2):
            start = time.perf_counter()
            fit.fit(ds, epochs=1, verbose=0)
            times.append(time.perf_counter() - start)
        seconds[name] = min(times)
        keras.backend.clear_session()
    label = f"CNN epoch on Emotify, {patched.features}"
    return [Row("real", f"{label}, whole {resolve(whole).frames}-frame clips", seconds["whole clips"], "s"),
            Row("real", f"{label}, {resolve(patched).patch}-frame patches", seconds["patches"], "s",
                ratio=seconds["whole clips"] / seconds["patches"], baseline="whole-clip epoch (speed-up)",
                target=">= 3x")]
