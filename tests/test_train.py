"""End-to-end tests of `python -m mgr_tf.train` on the tiny synthetic corpus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mgr_tf.core.published import EMOTIONS
from mgr_tf.train import main
from tests.conftest import TINY_CNN, run_train

# Every test here trains (end to end through the CLI).
pytestmark = pytest.mark.slow


def test_genre_run_writes_reports_plots_config_and_export(genre_run):
    run_dir, report = genre_run
    for name in ("report.json", "report.md", "config.json", "confusion_matrix.png", "curves.png", "model.keras",
                 "history_main.csv"):
        assert (run_dir / name).is_file(), name
    g = report["metrics"]["genre"]
    assert report["eval_split"] == "test"
    assert 0.0 <= g["accuracy"] <= 1.0 and set(g["per_class"]) >= {"Rock", "Jazz"}
    assert np.asarray(g["confusion_matrix"]).sum() == g["num_examples"] > 0
    assert report["epochs_run"] == 2
    assert (run_dir / "logs" / "main").is_dir()  # TensorBoard
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["task"] == "genre" and config["model"]["cnn_channels"] == [4, 8, 8, 8]
    assert "Accuracy" in (run_dir / "report.md").read_text()
    export = report["export_dir"]
    assert export.endswith(os.path.join("genre", "1")) and os.path.isfile(os.path.join(export, "saved_model.pb"))


def test_genre_report_numbers_equal_scikit_learn(genre_run, tiny_corpus):
    import keras
    from sklearn.metrics import accuracy_score, f1_score

    from mgr_tf import data as D
    from mgr_tf.core.config import DataConfig, from_dict

    run_dir, report = genre_run
    config = json.loads((run_dir / "config.json").read_text())
    data = from_dict(DataConfig, config["data"])
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    ds = D.make_dataset(data, "test")
    y = np.concatenate([t["genre"].numpy() for _, t in ds])
    pred = np.argmax(model.predict(ds, verbose=0)["genre"], axis=-1)
    assert report["metrics"]["genre"]["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert report["metrics"]["genre"]["macro_f1"] == pytest.approx(
        f1_score(y, pred, average="macro", zero_division=0))


def test_multitask_learned_weights_are_logged_and_plotted(multitask_run):
    run_dir, report = multitask_run
    assert set(report["metrics"]) == set(EMOTIONS)
    for name in EMOTIONS:
        assert (run_dir / f"scatter_{name}.png").is_file()
        assert -1.0 <= report["metrics"][name]["spearman"] <= 1.0
    weights = [k for k in report["history"] if k.startswith("weight_")]
    assert len(weights) == 3 and all(len(report["history"][k]) == 2 for k in weights)
    assert (run_dir / "task_weights.png").is_file()
    assert "val_mean_spearman" in report["history"]


def test_transfer_from_genre_model_runs_frozen_then_finetuned(genre_run, tiny_corpus, tmp_path):
    genre_dir, _ = genre_run
    run_dir, report = run_train(["--task", "energy", "--data-dir", str(tiny_corpus), "--init-from", str(genre_dir),
                                 "--epochs", "2", "--freeze-epochs", "1", *TINY_CNN], tmp_path)
    assert (run_dir / "history_frozen.csv").is_file() and (run_dir / "history_finetune.csv").is_file()
    assert report["epochs_run"] == 2 and "energy" in report["metrics"]


@pytest.mark.parametrize("args, message", [
    (["--task", "genre", "--init-from", "x"], "--init-from transfers a genre model"),
    (["--task", "valence", "--learned-weights"], "--learned-weights needs --task multitask"),
    (["--task", "multitask", "--loss-weights", "1", "2"], "2 numbers for the 3 targets (valence, energy, danceability)"),
    (["--task", "multitask", "--loss-weights", "a", "b", "c"], "expected numbers, name=number pairs or 'published'"),
    (["--task", "multitask", "--loss-weights", "calm=2"], "'calm' is not a target of the task"),
    (["--task", "multitask", "--loss-weights", "valence=-1"], "--loss-weights needs non-negative numbers"),
    (["--task", "valence", "--init-from", "/nonexistent/run"], "no trained model here"),
])
def test_incompatible_or_bad_flags_give_one_clear_error(args, message, tiny_corpus, tmp_path, capsys):
    from mgr_tf.core.cli import run_cli

    code = run_cli(main, [*args, "--data-dir", str(tiny_corpus), "--out", str(tmp_path / "r"), "--export", "none"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_init_from_a_regression_model_is_refused(multitask_run, tiny_corpus, tmp_path, capsys):
    from mgr_tf.core.cli import run_cli

    run_dir, _ = multitask_run
    code = run_cli(main, ["--task", "valence", "--init-from", str(run_dir), "--data-dir", str(tiny_corpus),
                          "--out", str(tmp_path / "r"), "--export", "none", *TINY_CNN])
    err = capsys.readouterr().err
    assert code == 2 and "genre" in err and str(run_dir) in err


def test_data_dir_lacking_the_sub_dataset_is_one_clear_error(tiny_corpus, tmp_path, capsys):
    from mgr_tf.core.cli import run_cli

    root = tmp_path / "partial"
    shutil.copytree(tiny_corpus / "fma_genre_spectrograms", root / "fma_genre_spectrograms")
    code = run_cli(main, ["--task", "valence", "--data-dir", str(root), "--out", str(tmp_path / "r"),
                          "--export", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "multitask_dataset" in err and "Traceback" not in err


def test_same_seed_same_metrics(tiny_corpus, tmp_path):
    args = ["--task", "genre", "--data-dir", str(tiny_corpus), "--epochs", "1", "--seed", "3", *TINY_CNN]
    _, a = run_train(args, tmp_path, name="a")
    _, b = run_train(args, tmp_path, name="b")
    assert a["metrics"] == b["metrics"]
    assert a["history"]["loss"] == b["history"]["loss"]


def test_overfit_batch_memorises_one_batch(tiny_corpus, tmp_path):
    _, report = run_train(["--task", "genre", "--data-dir", str(tiny_corpus), "--overfit-batch", "--epochs", "40",
                           "--dropout", "0", "--lr", "3e-3", "--max-frames", "256", "--batch-size", "16"], tmp_path)
    assert report["eval_split"] == "train"
    assert report["overfit"]["accuracy"] >= 0.9
    assert report["history"]["loss"][-1] < 0.5 * report["history"]["loss"][0]


@pytest.mark.slow
def test_killed_run_resumes_and_ends_with_the_same_epochs(tiny_corpus, tmp_path):
    """Kill a run mid-way (SIGKILL), rerun the same command: it continues to the same epoch count."""
    epochs = 6
    run_dir = tmp_path / "resume"
    cmd = [sys.executable, "-m", "mgr_tf.train", "--task", "genre", "--data-dir", str(tiny_corpus), "--epochs",
           str(epochs), "--patience", "100", "--out", str(run_dir), "--export", "none", *TINY_CNN]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = run_dir / "history_main.csv"
    deadline = time.time() + 300
    while time.time() < deadline:
        if history.exists() and len(history.read_text().strip().splitlines()) >= 3:  # header + 2 epochs
            break
        if proc.poll() is not None:
            pytest.fail("training ended before it could be killed")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(history.read_text().strip().splitlines()) - 1
    assert 2 <= done_before < epochs
    assert any((run_dir / "backup").rglob("*")), "no BackupAndRestore state was written"
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Epoch {done_before + 1}/{epochs}" in resumed.stdout  # it continued, it did not start again
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == epochs
    import csv

    epochs_logged = [int(r["epoch"]) for r in csv.DictReader(open(history))]
    assert sorted(set(epochs_logged)) == list(range(epochs))
    assert len(epochs_logged) <= epochs + 1  # at most the epoch in flight at the kill is logged twice


def test_unlabelled_test_split_evaluates_on_validation_and_says_so(tiny_corpus, tmp_path):
    root = tmp_path / "withheld"
    shutil.copytree(tiny_corpus / "multitask_dataset_beat", root / "multitask_dataset_beat")
    (root / "multitask_dataset_beat" / "test_labels.txt").unlink()
    _, report = run_train(["--task", "danceability", "--beat", "--data-dir", str(root), "--epochs", "1",
                           *TINY_CNN], tmp_path)
    assert report["eval_split"] == "validation" and "no labels" in report["eval_split_reason"]
    assert report["metrics"]["danceability"]["num_examples"] == report["counts"]["validation"]


def test_tensorflows_retracing_warning_is_dropped_and_every_other_record_kept(caplog):
    import logging

    from mgr_tf.core.cli import _DropRetracing

    logger = logging.getLogger("mgr_tf.test_retracing")
    drop = _DropRetracing()
    logger.addFilter(drop)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            logger.warning("5 out of the last 5 calls to <function f at 0x7f> triggered tf.function retracing. "
                           "Tracing is expensive")
            logger.warning("a warning that matters")
    finally:
        logger.removeFilter(drop)
    assert [record.getMessage() for record in caplog.records] == ["a warning that matters"]
