"""The blend of a from-scratch genre model with the wide statistics model (`mgr_tf.training.blend`, `mgr_tf.models.blend`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mgr_tf.core.config import DataConfig, TrainConfig
from mgr_tf.models import model_config
from mgr_tf.training.blend import GRID, choose_weight, log_loss
from mgr_tf.training.plan import Plan, blends, check
from tests.conftest import TINY_CNN, export_dir, run_train

TINY_FUSED_CNN = TINY_CNN  # whole fused clips, a tiny CNN (conftest)


def test_the_weight_is_the_grid_point_of_lowest_log_loss():
    # Loss(w) = -(log(.6 + .3w) + log(.4 + .4w) + log(.6 - .5w)) / 3: its minimum is at w = 0.34516 (the root of
    # .3/(.6+.3w) + .4/(.4+.4w) - .5/(.6-.5w)), between the grid points 0.30 (0.607833) and 0.35 (0.607137).
    p_model = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])
    p_base = np.array([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4]])
    weight, losses = choose_weight(p_model, p_base, np.array([0, 1, 0]))
    assert weight == 0.35 and len(losses) == len(GRID) == 21
    assert losses[GRID.index(0.35)] == pytest.approx(0.6071365752, abs=1e-9)
    assert losses[0] == pytest.approx(0.6459806598, abs=1e-9) and losses[-1] == pytest.approx(0.8770297200, abs=1e-9)
    # A model that is right everywhere takes the whole weight; one that is wrong everywhere none of it.
    assert choose_weight(p_model[:2], p_base[:2], np.array([0, 1]))[0] == 1.0
    assert choose_weight(p_model[:2], p_base[:2], np.array([1, 0]))[0] == 0.0
    assert log_loss(np.array([[0.5, 0.5]]), np.array([1])) == pytest.approx(np.log(2))


@pytest.mark.parametrize("family, task, baseline, flags, expected", [
    ("cnn", "genre", True, {}, True),
    ("lstm", "genre", True, {}, True),
    ("cnn", "genre", True, {"blend": "off"}, False),
    ("cnn", "genre", False, {}, False),  # no baseline beside it (--no-baseline)
    ("cnn", "valence", True, {}, False),  # regression serves the model alone
    ("musicnn", "genre", True, {}, False),  # an encoder's heads are linear already
    ("summary", "genre", True, {}, False),
    ("cnn", "genre", True, {"overfit_batch": True}, False),
    ("cnn", "genre", True, {"val_fraction": 0.0}, False),  # no validation clips to choose the weight on
])
def test_which_runs_blend_and_what_they_monitor(family, task, baseline, flags, expected):
    features = "musicnn" if family == "musicnn" else "mfcc"
    data_flags = {k: flags.pop(k) for k in list(flags) if k == "val_fraction"}
    plan = Plan(DataConfig(task=task, features=features, patch_frames=0 if family == "musicnn" else 256, **data_flags),
                model_config(family), TrainConfig(**flags), baseline=baseline)
    assert blends(plan) is expected
    assert check(plan).train.monitor == ("loss" if expected else "metric")
    assert check(Plan(plan.data, plan.model, TrainConfig(monitor="metric", **flags), baseline=baseline)).train.monitor == "metric"


@pytest.mark.slow
def test_an_mfcc_model_and_its_statistics_partner_serve_as_one_model_on_the_fused_arrays(tiny_corpus, tmp_path):
    import keras
    import tensorflow as tf

    from mgr_tf.features.types import derive
    from mgr_tf.serving.requests import load_signature, rest_predict

    args = ["--data-dir", str(tiny_corpus), "--epochs", "2", "--features", "mfcc", "--model", "cnn",
            "--cnn-channels", "4", "8", "8", "8", "--patch-frames", "128", "--batch-size", "16"]
    run_dir, report = run_train(args, tmp_path, export="blended", baseline=True)
    blend = json.loads((run_dir / "blend.json").read_text())
    assert report["blend"] == blend and report["headline"]["accuracy"] == report["metrics"]["genre"]["accuracy"]
    assert (run_dir / "predictions_model.csv").is_file() and (run_dir / "predictions.csv").is_file()
    config = json.loads((export_dir((run_dir, report)) / "assets" / "config.json").read_text())
    assert config["data"]["features"] == "fused" and config["num_bands"] == 140 and config["model_features"] == "mfcc"
    assert config["signatures"] == ["serving_default", "serving_waveform", "serving_fused"]

    # Served = w * model(MFCCs of the arrays) + (1 - w) * wide statistics model(arrays), through TF Serving's REST
    # format; the baseline (mean and std only) is the yardstick beside them, not part of the served model.
    x = np.random.default_rng(0).normal(-30, 10, size=(2, 300, 140)).astype(np.float32)
    x[..., 128:] = np.random.default_rng(1).uniform(0, 1, size=(2, 300, 12))
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    base = keras.saving.load_model(run_dir / "wide" / "model.keras", compile=False)
    assert blend["partner_run"] == "wide" and base.get_layer("statistics").output.shape[-1] == 5 * 140
    w = blend["weight_model"]
    expected = (w * model.predict({"spectrogram": derive("mfcc", tf.constant(x))}, verbose=0)["genre"]
                + (1 - w) * base.predict({"spectrogram": x}, verbose=0)["genre"])
    answer = rest_predict(load_signature(export_dir((run_dir, report))),
                          {"instances": [{"spectrogram": row.tolist()} for row in x]})
    served = np.array([p["probabilities"] for p in answer["predictions"]])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    fused = rest_predict(load_signature(export_dir((run_dir, report)), "serving_fused"),
                         {"instances": [{"spectrogram": row.tolist()} for row in x]})
    np.testing.assert_allclose(np.array([p["probabilities"] for p in fused["predictions"]]), expected, atol=1e-5)
    assert [p["genre"] for p in answer["predictions"]] == [report["class_names"][i] for i in expected.argmax(-1)]

    # Whatever weight the run chose, the served graph is the weighted average at any weight (here 0.3).
    from mgr_tf.core.config import FeatureConfig
    from mgr_tf.models.blend import blend_model

    at = blend_model(model, base, 0.3, features="mfcc", feature_config=FeatureConfig())
    np.testing.assert_allclose(
        at.predict({"spectrogram": x}, verbose=0)["genre"],
        0.3 * model.predict({"spectrogram": derive("mfcc", tf.constant(x))}, verbose=0)["genre"]
        + 0.7 * base.predict({"spectrogram": x}, verbose=0)["genre"], atol=1e-6)

    # The run's numbers are the blend's: blend.json's weight on the two saved models' test probabilities; the
    # model alone keeps its own; the weight is the grid point of lowest validation log-loss, the model's own loss
    # at w = 1.
    from sklearn.metrics import accuracy_score, f1_score

    from mgr_tf import data as D
    from mgr_tf.core.config import from_dict

    def probabilities(keras_model, run, split):
        config = from_dict(DataConfig, json.loads((run / "config.json").read_text())["data"])
        ds = D.make_dataset(config, split)
        return np.concatenate([t["genre"].numpy() for _, t in ds]), keras_model.predict(ds, verbose=0)["genre"]

    y, p_model = probabilities(model, run_dir, "test")
    y_base, p_base = probabilities(base, run_dir / "wide", "test")
    assert np.array_equal(y, y_base)
    mixed = np.argmax(w * p_model + (1 - w) * p_base, axis=-1)
    assert report["metrics"]["genre"]["accuracy"] == pytest.approx(accuracy_score(y, mixed))
    assert report["metrics"]["genre"]["macro_f1"] == pytest.approx(f1_score(y, mixed, average="macro", zero_division=0))
    alone = report["model_alone"]["metrics"]["genre"]
    assert alone["accuracy"] == pytest.approx(accuracy_score(y, p_model.argmax(-1)))
    assert w == blend["grid"][int(np.argmin(blend["grid_log_loss"]))]
    y_val, p_val = probabilities(model, run_dir, "validation")
    assert blend["validation_log_loss"]["model"] == pytest.approx(log_loss(p_val, y_val), rel=1e-5)
    assert blend["validation_clips"] == report["counts"]["validation"] == len(y_val)
    assert report["wide_alone"]["metrics"]["genre"]["accuracy"] == pytest.approx(accuracy_score(y, p_base.argmax(-1)))
    markdown = (run_dir / "report.md").read_text()
    assert "blended with a linear head on per-band statistics (mean, std, min, max, delta_std)" in markdown
    assert "| wide statistics alone |" in markdown and "| summary baseline |" in markdown

    # `predict` on an audio file sends what the export's config asks for (the fused arrays).
    import soundfile as sf

    from mgr_tf.predict import main as predict_main

    rate = 22050
    t = np.arange(3 * rate) / rate
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    assert predict_main([str(export_dir((run_dir, report))), str(tmp_path / "tone.wav"), "--json", "--min-seconds", "2"]) == 0

    # Exported again from the run folder: the same blend.
    from mgr_tf.serving.export import export_run

    again = export_run(run_dir, name="again", root=str(tmp_path / "exports"))
    answer = rest_predict(load_signature(Path(again)), {"instances": [{"spectrogram": row.tolist()} for row in x]})
    np.testing.assert_allclose(np.array([p["probabilities"] for p in answer["predictions"]]), expected, atol=1e-5)


def test_the_blend_partner_is_the_baseline_with_every_statistic_on_the_same_split(tmp_path):
    from mgr_tf.training.baseline import baseline_plan, wide_plan

    plan = Plan(DataConfig(features="mfcc", cv_folds=5, cv_fold=2, seed=7), model_config("cnn"), TrainConfig(),
                run_dir=tmp_path / "run", export_name="x", baseline=True)
    wide, base = wide_plan(plan), baseline_plan(plan)
    assert base.model.backbone.summary_stats == ("mean", "std")
    assert wide.model.backbone.summary_stats == ("mean", "std", "min", "max", "delta_std")
    assert wide.run_dir == tmp_path / "run" / "wide" and wide.export_name is None and not wide.baseline
    assert wide.data == base.data and wide.train == base.train and wide.data.features == "fused"
    assert (wide.data.cv_fold, wide.data.seed) == (2, 7)


@pytest.mark.slow
def test_refit_trains_on_train_and_validation_for_the_best_epoch_at_the_same_learning_rates(tiny_corpus, tmp_path):
    import csv

    from mgr_tf.training.fit import read_history

    args = ["--data-dir", str(tiny_corpus), "--epochs", "4", "--lr-patience", "1", *TINY_FUSED_CNN, "--refit"]
    run_dir, report = run_train(args, tmp_path, baseline=True)
    main = read_history(run_dir / "history_main.csv")
    best = int(np.argmin(main["val_loss"])) + 1  # --monitor auto watches the loss of a blended run
    assert report["refit"]["epochs"] == best
    with open(run_dir / "history_refit.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == best and all(r.get("val_loss", "NA") == "NA" for r in rows)  # nothing held out
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx(main["learning_rate"][:best])
    counts = report["counts"]
    assert report["refit"]["clips"] == counts["train"] + counts["validation"]
    # The served model is the refit one; the blend weight was chosen with the model trained on train alone.
    assert (run_dir / "model_train_only.keras").is_file() and report["blend"]["validation_clips"] == counts["validation"]


def test_refit_is_refused_where_nothing_trains_from_scratch():
    from mgr_tf.core.cli import UserError

    with pytest.raises(UserError, match="--refit retrains a model trained from scratch"):
        check(Plan(DataConfig(features="musicnn", patch_frames=0), model_config("musicnn"), TrainConfig(refit=True)))
    with pytest.raises(UserError, match="--refit"):
        check(Plan(DataConfig(), model_config("cnn"), TrainConfig(refit=True, overfit_batch=True)))
