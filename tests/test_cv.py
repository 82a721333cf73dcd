"""Cross-validation: pooled stratified folds in the pipeline and `python -m mgr_tf.cv` end to end."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest

from mgr_tf import data
from mgr_tf.core.config import DataConfig
from mgr_tf.data.splits import stratified_folds, stratified_subset
from tests.conftest import TINY_CNN


def test_stratified_folds_are_balanced_per_stratum_and_seeded():
    ids = [f"t{i:03d}" for i in range(30)]
    strata = [i % 3 for i in range(30)]
    folds = stratified_folds(ids, strata, 5, seed=0)
    assert folds == stratified_folds(ids, strata, 5, seed=0)
    assert folds != stratified_folds(ids, strata, 5, seed=1)
    for s in range(3):
        counts = Counter(f for f, st in zip(folds, strata) if st == s)
        assert sorted(counts.values()) == [2, 2, 2, 2, 2]
    assert Counter(folds) == {f: 6 for f in range(5)}


def test_stratified_subset_takes_largest_remainders():
    ids = [f"t{i}" for i in range(10)]
    strata = ["a"] * 7 + ["b"] * 3
    chosen = stratified_subset(ids, strata, 3, seed=0)
    assert sum(chosen) == 3
    assert sum(c for c, s in zip(chosen, strata) if s == "a") == 2  # 2.1 and 0.9 -> 2 and 1


def test_cv_folds_partition_train_and_test(tiny_corpus):
    base = DataConfig(data_dir=str(tiny_corpus), task="genre", max_frames=64, batch_size=8)
    pooled = set(data.split_ids(base, "train")) | set(data.split_ids(base, "validation")) | set(
        data.split_ids(base, "test"))
    tests = []
    for fold in range(3):
        cfg = dataclasses.replace(base, cv_folds=3, cv_fold=fold)
        parts = {s: set(data.split_ids(cfg, s)) for s in data.SPLITS}
        assert not parts["train"] & parts["test"] and not parts["validation"] & parts["test"]
        assert parts["train"] | parts["validation"] | parts["test"] == pooled
        tests.append(parts["test"])
        info = data.dataset_info(cfg)
        assert info.test_labelled and info.counts["test"] == len(parts["test"])
        seen = [i.decode() for batch, _ in data.make_dataset(cfg, "test", with_ids=True)
                for i in batch["track_id"].numpy()]
        assert sorted(seen) == sorted(parts["test"])
    assert set().union(*tests) == pooled and sum(map(len, tests)) == len(pooled)


@pytest.mark.slow
def test_cv_command_writes_table_and_resumes(tiny_corpus, tmp_path, capsys):
    from mgr_tf.cv import main

    out = tmp_path / "cv"
    argv = [str(tiny_corpus), "--folds", "2", "--epochs", "1", *TINY_CNN, "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "cv_report.json").read_text())
    models = Counter(row["model"] for row in result["rows"])
    # The default serves the CNN blended with its fold's wide statistics model ("cnn"); each alone, and the
    # baseline, are reported beside it.
    assert models == {"cnn": 2, "cnn alone": 2, "wide statistics alone": 2, "summary baseline": 2}
    assert set(result["summary"]) == {"cnn", "cnn alone", "wide statistics alone", "summary baseline"}
    reports = [json.loads((out / f"fold_{k}" / "report.json").read_text()) for k in range(2)]
    assert result["blend_weights"] == [r["blend"]["weight_model"] for r in reports]
    assert [row["accuracy"] for row in result["rows"] if row["model"] == "cnn alone"] == [
        r["model_alone"]["headline"]["accuracy"] for r in reports]
    assert [row["accuracy"] for row in result["rows"] if row["model"] == "wide statistics alone"] == [
        r["wide_alone"]["headline"]["accuracy"] for r in reports]
    assert "the model's weight per fold" in (out / "cv_report.md").read_text()
    accs = [row["accuracy"] for row in result["rows"] if row["model"] == "cnn"]
    assert result["summary"]["cnn"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert np.asarray(result["confusion_matrix"]).sum() == result["examples"]
    assert (out / "confusion_matrix.png").stat().st_size > 0 and "± " in (out / "cv_report.md").read_text()
    # Pooled out-of-fold scores: every clip once, the accuracy of the summed confusion matrix.
    matrix = np.asarray(result["confusion_matrix"])
    assert result["pooled"]["cnn"]["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    held_out = [line.split(",")[0] for fold in range(2)
                for line in (out / f"fold_{fold}" / "predictions.csv").read_text().splitlines()[1:]]
    assert len(held_out) == len(set(held_out)) == result["examples"]
    assert set(result["pooled"]) == {"cnn", "cnn alone", "wide statistics alone", "summary baseline"}
    stamp = (out / "fold_0" / "report.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    assert "finished earlier, kept" in capsys.readouterr().out
    assert (out / "fold_0" / "report.json").stat().st_mtime_ns == stamp


def test_learning_curve_trains_on_growing_shares_of_the_same_folds(tiny_corpus, tmp_path):
    from mgr_tf.cv import main

    out = tmp_path / "curve"
    assert main([str(tiny_corpus), "--folds", "2", "--model", "summary", "--features", "fused", "--out", str(out),
                 "--learning-curve", "0.5", "1", "--no-baseline"]) == 0
    curve = json.loads((out / "learning_curve.json").read_text())
    half, full = curve["points"]
    assert (half["fraction"], full["fraction"]) == (0.5, 1.0) and curve["metric"] == "accuracy"
    assert half["train_clips"] == pytest.approx(full["train_clips"] / 2, abs=1.0)
    assert full["clips_per_class"] == pytest.approx(full["train_clips"] / 10)
    for fold in range(2):  # the same held-out clips at every share
        ids = [(out / f"fraction_{f}" / f"fold_{fold}" / "predictions.csv").read_text().splitlines() for f in ("0.5", "1")]
        assert [line.split(",")[0] for line in ids[0]] == [line.split(",")[0] for line in ids[1]]
    assert (out / "learning_curve.png").stat().st_size > 0 and "| 0.5 |" in (out / "learning_curve.md").read_text()
