"""Tests of `python -m mgr_tf.tune`: study parsing, a tiny study end to end, resume, export, distributed mode."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mgr_tf.core.cli import UserError, run_cli
from mgr_tf.core.published import EMOTIONS
from mgr_tf.tune import main
from mgr_tf.tuning.space import weights_from_values
from mgr_tf.tuning.study import load_study, parse_study

TINY_STUDY = {
    "name": "tiny",
    "model": "cnn",
    "beat": True,
    "oracle": "random",
    "max_trials": 2,
    "epochs": 1,
    "batch_size": 16,
    "max_frames": 64,
    "model_overrides": {"cnn_channels": [4, 8, 8, 8]},
    "search_space": {"weights": {"type": "simplex", "total": 3.0},
                     "learning_rate": {"min": 1e-4, "max": 3e-3, "sampling": "log", "default": 1e-3}},
}


def write_study(path: Path, **changes) -> Path:
    path.write_text(json.dumps({**TINY_STUDY, **changes}))
    return path


# --------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("changes, key, problem", [
    ({"epoch": 3}, "epoch", "unknown key"),
    ({"oracle": "grid"}, "oracle", "must be one of random, bayesian, hyperband"),
    ({"search_space": {"learning_rate": {"min": 0.01, "max": 0.001}}}, "search_space.learning_rate", "min (0.01) > max"),
    ({"search_space": {"weights": {"type": "ranges", "valence": [-1, 2], "energy": [0, 1],
                                   "danceability": [0, 1]}}}, "search_space.weights.valence.min", "must be >= 0"),
    ({"search_space": {"weights": {"type": "ranges", "valence": [0, 2], "energy": [0, 1]}}},
     "search_space.weights.danceability", "missing"),
    ({"search_space": {"momentum": [0, 1]}}, "search_space.momentum", "unknown key"),
    ({"search_space": {"weights": {"type": "dirichlet"}}}, "search_space.weights.type", "simplex or ranges"),
    ({"max_trials": 0}, "max_trials", "must be >= 1"),
    ({"model_overrides": {"cnn_chanels": [4]}}, "model_overrides", "cnn_chanels"),
    ({"train_overrides": {"loss_weights": [1, 1, 1]}}, "train_overrides.loss_weights", "set by the study"),
])
def test_study_errors_name_the_file_and_the_key(tmp_path, changes, key, problem):
    path = write_study(tmp_path / "bad.json", **changes)
    with pytest.raises(UserError) as info:
        study = load_study(path)
        study.bind(study.data_config())  # the weights of the data's targets are checked against the data
    message = str(info.value)
    assert message.startswith(f"{path}: {key}:"), message
    assert problem in message


def test_bad_json_and_missing_file_give_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "name": "x",\n  "epochs": ,\n}')
    assert run_cli(main, [str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}, line 3: invalid JSON: Expecting value"
    assert run_cli(main, [str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such study file" in capsys.readouterr().err


def test_shipped_studies_parse():
    root = Path(__file__).resolve().parents[1] / "tuning"
    names = {p.stem: load_study(p) for p in root.glob("*.json")}
    assert "multitask_weights" in names
    default = names["multitask_weights"]
    assert default.data_dir is None and default.beat and default.oracle == "bayesian"
    assert names["multitask_weights_fma"].weights.type == "ranges"


def test_simplex_weights_sum_to_total_and_equal_draws_give_equal_weights():
    study = parse_study(TINY_STUDY, "tiny.json")
    study = study.bind(study.data_config())  # the embedded corpus: the published three targets
    assert weights_from_values(study, {f"u_{t}": 0.3 for t in EMOTIONS}) == pytest.approx((1.0, 1.0, 1.0))
    w = weights_from_values(study, {"u_valence": 0.9, "u_energy": 0.05, "u_danceability": 0.5})
    assert sum(w) == pytest.approx(3.0) and w[1] > w[2] > w[0] > 0


# --------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="session")
def tune_run(tiny_corpus, tmp_path_factory):
    """A tiny random study: 2 trials of 1 epoch plus the three reference rows."""
    tmp = tmp_path_factory.mktemp("tune")
    study = write_study(tmp / "tiny.json")
    run_dir = tmp / "run"
    assert main([str(study), "--data-dir", str(tiny_corpus), "--out", str(run_dir)]) == 0
    snapshot = {p.parent.name: p.read_text() for p in (run_dir / "tuner").glob("trial_*/trial.json")}
    snapshot["references.json"] = (run_dir / "references.json").read_text()
    return study, run_dir, snapshot


def read_table(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as fh:
        return list(csv.DictReader(fh))


def test_study_writes_table_with_references_best_json_and_plot(tune_run):
    _, run_dir, _ = tune_run
    rows = read_table(run_dir)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("trial") == 2
    assert {r["trial"] for r in rows if r["kind"] == "reference"} == {"ref:equal", "ref:published", "ref:learned"}
    scores = [float(r["val_mean_spearman"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    for row in rows:  # the objective is the mean of the three per-target values
        per_target = [float(row[f"val_{t}_spearman"]) for t in EMOTIONS]
        assert float(row["val_mean_spearman"]) == pytest.approx(sum(per_target) / 3, abs=1e-3)
    by_name = {r["trial"]: r for r in rows}
    assert [float(by_name["ref:published"][f"w_{t}"]) for t in EMOTIONS] == [1.5, 0.8, 0.8]
    assert [float(by_name["ref:equal"][f"w_{t}"]) for t in EMOTIONS] == [1.0, 1.0, 1.0]
    for row in rows:
        if row["kind"] == "trial":
            assert sum(float(row[f"w_{t}"]) for t in EMOTIONS) == pytest.approx(3.0, rel=1e-3)
            assert row["tuner_id"] == "tuner0"
    best = json.loads((run_dir / "best.json").read_text())
    best_trial = next(r for r in rows if r["kind"] == "trial")
    assert best["trial_id"] == best_trial["trial"]
    assert best["val_mean_spearman"] == pytest.approx(float(best_trial["val_mean_spearman"]), abs=1e-3)
    assert sum(best["weights"].values()) == pytest.approx(3.0) and "--loss-weights" in best["train_command"]
    assert (run_dir / "objective_vs_weights.png").stat().st_size > 10_000
    assert "ref:published" in (run_dir / "results.md").read_text()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["study"]["name"] == "tiny" and config["data"]["task"] == "multitask" and config["max_trials"] == 2


def test_best_json_train_command_parses_back_to_the_best_trial_configs(tune_run, tiny_corpus):
    import shlex

    from mgr_tf.training.flags import build_parser, configs_from_args
    from mgr_tf.tuning.space import Setting, setting_configs

    study_path, run_dir, _ = tune_run
    unbound = load_study(study_path)
    study = unbound.bind(unbound.data_config(str(tiny_corpus)))  # its targets: the data's, as the tuner binds it
    best = json.loads((run_dir / "best.json").read_text())
    argv = shlex.split(best["train_command"])
    assert argv[:3] == ["python", "-m", "mgr_tf.train"]
    data, model_config, train_config, regression = configs_from_args(build_parser().parse_args(argv[3:]))
    weights = tuple(best["weights"][t] for t in EMOTIONS)
    expected_model, expected_train, expected_regression = setting_configs(
        study, Setting(weights, False, tuple(best["values"].items())))
    assert data == unbound.data_config(str(tiny_corpus))
    assert model_config == expected_model and model_config.cnn_channels == (4, 8, 8, 8)
    assert train_config == expected_train and train_config.learning_rate == best["values"]["learning_rate"]
    assert regression == expected_regression


def test_flags_from_dataclass_inverts_add_dataclass_args():
    import argparse
    from dataclasses import dataclass

    from mgr_tf.core.cli import add_dataclass_args, dataclass_from_args, flags_from_dataclass

    @dataclass(frozen=True)
    class Options:
        """Args:
            rate: a float.
            sizes: a tuple.
            on: a bool that defaults to True.
            off: a bool that defaults to False.
            name: an optional string.
            count: an int.
        """

        rate: float = 0.1
        sizes: tuple[int, ...] = (1, 2)
        on: bool = True
        off: bool = False
        name: str | None = None
        count: int = 3

    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, Options, prefix="opt")
    assert flags_from_dataclass(Options(), prefix="opt") == []
    changed = Options(rate=-1e-05, sizes=(4, 8, 16), on=False, off=True, name="x y", count=3)
    flags = flags_from_dataclass(changed, prefix="opt")
    assert flags == ["--opt-rate=-1e-05", "--opt-sizes", "4", "8", "16", "--no-opt-on", "--opt-off",
                     "--opt-name", "x y"]
    assert dataclass_from_args(Options, parser.parse_args(flags), prefix="opt") == changed
    assert flags_from_dataclass(Options(rate=0.5), Options(rate=0.5, count=7)) == ["--count", "3"]
    assert flags_from_dataclass(Options(rate=0.5), rename={"rate": "lr"}) == ["--lr", "0.5"]


@pytest.fixture(scope="session")
def resumed_run(tune_run, tiny_corpus, tmp_path_factory):
    """The same study continued to 3 trials (in a copy of its folder), the best configuration exported."""
    study, first_dir, snapshot = tune_run
    run_dir = tmp_path_factory.mktemp("tune_resumed") / "run"
    shutil.copytree(first_dir, run_dir)  # tune_run's own folder stays as its tests expect it
    exports = tmp_path_factory.mktemp("tune_exports")
    assert main([str(study), "--data-dir", str(tiny_corpus), "--out", str(run_dir), "--max-trials", "3",
                 "--export", "tuned", "--export-root", str(exports)]) == 0
    return run_dir, snapshot, exports


def test_rerun_continues_the_study_without_rerunning_trials(resumed_run):
    run_dir, before, _ = resumed_run
    trials = sorted((run_dir / "tuner").glob("trial_*/trial.json"))
    assert len(trials) == 3
    assert sorted(k for k in before if k.startswith("trial_")) == ["trial_0", "trial_1"]
    for name in ("trial_0", "trial_1"):  # not re-run: their records are unchanged
        assert (run_dir / "tuner" / name / "trial.json").read_text() == before[name]
    assert (run_dir / "references.json").read_text() == before["references.json"]  # cached, not retrained
    assert [r["kind"] for r in read_table(run_dir)].count("trial") == 3


def test_export_writes_a_saved_model_trained_on_train_plus_validation(resumed_run):
    import tensorflow as tf

    run_dir, _, exports = resumed_run
    version = exports / "tuned" / "1"
    assert (version / "saved_model.pb").is_file()
    config = json.loads((run_dir / "export_tuned" / "config.json").read_text())
    assert config["data"]["val_fraction"] == 0.0 and config["task"] == "multitask"
    best_weights = json.loads((run_dir / "best.json").read_text())["weights"]
    assert config["regression"]["loss_weights"] == {t: pytest.approx(best_weights[t]) for t in EMOTIONS}
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    out = served(spectrogram=tf.zeros([2, 64, 140]) + 0.5)
    assert set(out) >= set(EMOTIONS)
    assert all(out[t].shape[0] == 2 and 0.0 <= float(tf.reduce_min(out[t])) <= 1.0 for t in EMOTIONS)


def test_hyperband_tuner_is_capped_by_max_trials(tiny_corpus, tmp_path):
    from mgr_tf.tuning.hypermodel import make_tuner

    study = parse_study({**TINY_STUDY, "oracle": "hyperband", "epochs": 3}, "hb.json")
    tuner = make_tuner(study, study.data_config(str(tiny_corpus)), tmp_path / "hb", max_trials=4)
    assert tuner.oracle.max_trials == 4 and tuner.oracle.max_epochs == 3
    assert {f"u_{t}" for t in EMOTIONS} <= set(tuner.oracle.get_space().values)


def test_changed_study_refuses_the_old_run_folder(tune_run, tiny_corpus, tmp_path, capsys):
    _, run_dir, _ = tune_run
    other = write_study(tmp_path / "tiny.json", epochs=2)
    assert run_cli(main, [str(other), "--data-dir", str(tiny_corpus), "--out", str(run_dir)]) == 2
    assert "study.epochs differs" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- distributed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_worker_finish_a_study(tiny_corpus, tmp_path):
    from mgr_tf.data import dataset_info

    study_path = write_study(tmp_path / "tiny.json")
    dataset_info(load_study(study_path).data_config(str(tiny_corpus)))  # prepare the records once, before both
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "mgr_tf.tune", str(study_path), "--data-dir", str(tiny_corpus),
            "--out", str(run_dir), "--no-references"]
    base = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port()),
            "TF_CPP_MIN_LOG_LEVEL": "2"}
    chief = subprocess.Popen(argv, env={**base, "KERASTUNER_TUNER_ID": "chief"}, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = None
    try:
        worker = subprocess.Popen(argv, env={**base, "KERASTUNER_TUNER_ID": "tuner0"}, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        worker_out, _ = worker.communicate(timeout=240)
        chief_out, _ = chief.communicate(timeout=60)
    finally:
        for proc in (worker, chief):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert worker.returncode == 0, worker_out[-3000:]
    assert chief.returncode == 0, chief_out[-3000:]
    assert "[tune] worker tuner0: no trials left" in worker_out
    assert worker_out.count("[tune] trial ") == 2 and "[tune] trial " not in chief_out
    rows = read_table(run_dir)
    assert [r["kind"] for r in rows] == ["trial", "trial"]
    assert {r["tuner_id"] for r in rows} == {"tuner0"}
    assert json.loads((run_dir / "best.json").read_text())["trial_id"] in {r["trial"] for r in rows}
    assert (run_dir / "objective_vs_weights.png").is_file()
