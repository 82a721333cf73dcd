"""Distributed training (`--distribute`, `mgr_tf.training.distributed`): TF_CONFIG roles, sharded input, and
runs on two replicas (two worker processes on 127.0.0.1, or two logical CPUs) compared with one process.

How close "equal" is. With the same seed, the same initial weights and the same global batches, a distributed
run differs from one process only in float rounding: the gradient is summed over replicas (another summation
order), synchronised batch norm computes E[x^2] - E[x]^2 instead of the two-pass variance, and oneDNN picks
kernels by batch size. Observed on the tiny runs below: losses agree to ~1e-5 relative, 99% of the weights to
~3e-5 and the median to ~2e-7. Adam turns a rounding-level difference into an update of up to the learning rate
where a gradient is itself ~0 (its first updates are about lr * sign(g); a batch-norm scale whose gradient is
pure rounding flips sign): so no weight may differ by more than lr per step taken (a hard bound), and 99% of
them must agree to 1e-4 (a wrong shard, batch or loss scale moves most weights by ~lr, 10x more).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DataConfig, TrainConfig
from mgr_tf.training import cluster
from tests.conftest import TINY_CNN, TINY_LSTM, run_train

GENRE = ["--task", "genre", *TINY_CNN]
WORKER_TIMEOUT = 420  # seconds for one worker process (TensorFlow start, tiny data, a few epochs)


def _tf_config(ports, rank):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": rank}})


def _start_workers(argv, ports, logs):
    """One `python -m mgr_tf.train` per port, TF_CONFIG naming its rank; output to logs[rank]."""
    procs = []
    for rank, log in enumerate(logs):
        env = {**os.environ, "TF_CONFIG": _tf_config(ports, rank), "PYTHONUNBUFFERED": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "mgr_tf.train", *argv], env=env,
                                      stdout=open(log, "w"), stderr=subprocess.STDOUT))
    return procs


def _wait(procs, logs, timeout=WORKER_TIMEOUT):
    codes = []
    for proc, log in zip(procs, logs):
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"a worker did not finish in {timeout} s:\n{Path(log).read_text()[-3000:]}")
    return codes


def _weights_close(a, b, bound):
    """Asserts two models' weights agree as the module docstring says (`bound`: lr x steps)."""
    diff = np.concatenate([np.abs(x.numpy() - y.numpy()).ravel() for x, y in zip(a.weights, b.weights)])
    assert len(a.weights) == len(b.weights)
    assert diff.max() <= bound, f"max weight difference {diff.max():.2e} > lr x steps = {bound:.2e}"
    assert np.quantile(diff, 0.99) <= 1e-4, f"99% quantile of weight differences {np.quantile(diff, 0.99):.2e}"


def _history_close(a, b, keys=None):
    for key in keys or a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)


# --------------------------------------------------------------------------------------------- fast: flags, roles
def test_distribute_flag_lists_its_modes_and_refuses_others():
    from mgr_tf.training.flags import build_parser

    assert TrainConfig().distribute == "none"
    with pytest.raises(ValueError, match="distribute must be one of"):
        TrainConfig(distribute="horovod")
    text = build_parser().format_help()
    assert "--distribute {none,mirrored,multiworker,auto}" in text and "TF_CONFIG" in text


def test_tf_config_gives_ranks_and_the_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster.this_task() is None and cluster.is_chief() and cluster.resolve_mode("auto") == "none"
    assert cluster.resolve_mode("auto", gpus=2) == "mirrored"
    monkeypatch.setenv("TF_CONFIG", _tf_config([1, 2, 3], 2))
    assert cluster.this_task() == cluster.Task("worker", 2, 2, 3) and not cluster.is_chief()
    assert cluster.resolve_mode("auto") == "multiworker"
    both = {"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]}}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**both, "task": {"type": "chief", "index": 0}}))
    assert cluster.this_task().rank == 0 and cluster.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({**both, "task": {"type": "worker", "index": 0}}))
    assert cluster.this_task().rank == 1 and not cluster.is_chief()
    scratch = cluster.scratch_dir(Path("runs/r"), 1)
    assert scratch == Path("runs/r/workertemp_1") and cluster.chief_dir(scratch) == Path("runs/r")


@pytest.mark.parametrize("config, message", [
    ("{not json", "not JSON"),
    ({"cluster": {"worker": ["h:1"]}, "task": {"type": "evaluator", "index": 0}}, "'evaluator' is not supported"),
    ({"cluster": {"worker": ["h:1"], "ps": ["h:2"]}, "task": {"type": "worker", "index": 0}}, "ps tasks"),
    ({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 3}}, "not in its cluster"),
])
def test_bad_tf_config_is_one_clear_error(monkeypatch, config, message):
    monkeypatch.setenv("TF_CONFIG", config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(UserError, match=message):
        cluster.this_task()
    assert message in cluster.problem("multiworker")


@pytest.mark.parametrize("train, model, message", [
    (TrainConfig(distribute="multiworker"), "cnn", "needs TF_CONFIG"),
    (TrainConfig(distribute="mirrored", overfit_batch=True), "cnn", "--overfit-batch trains in one process"),
    (TrainConfig(distribute="mirrored"), "musicnn", "frozen encoder features"),
])
def test_plan_refuses_what_cannot_be_distributed(monkeypatch, train, model, message):
    from mgr_tf.models import model_config
    from mgr_tf.training.plan import Plan, check

    monkeypatch.delenv("TF_CONFIG", raising=False)
    data = DataConfig(features="musicnn" if model == "musicnn" else "fused", patch_frames=0)
    with pytest.raises(UserError, match=message):
        check(Plan(data, model_config(model), train))


def test_shards_partition_the_split(tiny_corpus):
    from mgr_tf.data import make_dataset, split_ids

    data = DataConfig(data_dir=str(tiny_corpus), features="fused", patch_frames=64, max_frames=256, batch_size=4)
    ids = split_ids(data, "train")
    parts = [split_ids(data, "train", shard=(i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids) and sum(len(p) for p in parts) == len(ids)
    assert split_ids(data, "train", shard=(0, 1)) == ids
    for i, part in enumerate(parts):
        seen = [t.decode() for f, _ in make_dataset(data, "train", with_ids=True, shuffle=False, shard=(i, 3))
                for t in f["track_id"].numpy()]
        assert seen == part  # each shard reads exactly its own clips
    with pytest.raises(ValueError, match="shard index"):
        split_ids(data, "train", shard=(3, 3))


# --------------------------------------------------------------------------------------------- slow: runs
@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["--task", "genre", "--mixup", "0.4", "--patch-frames", "128", "--model", "cnn", "--cnn-channels", "4", "8", "8",
     "8", "--batch-size", "16"],  # patches, mixup (sample weights), dropout, batch norm
    ["--task", "multitask", "--beat", "--learned-weights", *TINY_LSTM],  # learned weights, Spearman, buckets
], ids=["genre-mixup-patches", "multitask-learned-lstm"])
def test_mirrored_on_one_device_equals_fit(tiny_corpus, tmp_path, args):
    """The custom step on one replica against Keras `fit`: one epoch (from the second on, Keras 3's `fit` skips a
    shuffle order per epoch for data of known size, so only the first epoch sees the same batches)."""
    from mgr_tf.models.build import load_keras_model

    args = [*args, "--data-dir", str(tiny_corpus), "--epochs", "1"]
    one_dir, one = run_train([*args, "--distribute", "none"], tmp_path, name="none")
    mirrored_dir, mirrored = run_train([*args, "--distribute", "mirrored"], tmp_path, name="mirrored")
    assert set(mirrored) == set(one) and set(mirrored["history"]) == set(one["history"])
    # The per-output training losses of learned weights are left out: `fit` logs them oddly after its last batch.
    keys = [k for k in one["history"] if k.startswith("val_") or not k.endswith("_loss")]
    _history_close(one["history"], mirrored["history"], keys)
    # One epoch of these tiny splits is at most 8 steps (length buckets make more, smaller batches).
    _weights_close(load_keras_model(one_dir), load_keras_model(mirrored_dir), 1e-3 * 8)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_equals_one_process(tiny_corpus, tmp_path):
    """MirroredStrategy with two replicas in one process (two logical CPUs): the per-replica batches of one
    pipeline make up the single-process batches, so one epoch matches `fit`."""
    from mgr_tf.models.build import load_keras_model

    args = [*GENRE, "--dropout", "0", "--data-dir", str(tiny_corpus), "--epochs", "1"]
    one_dir, one = run_train(args, tmp_path, name="none")
    script = ("import sys, tensorflow as tf\n"
              "cpu = tf.config.list_physical_devices('CPU')[0]\n"
              "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
              "from mgr_tf.core.cli import run_cli\nfrom mgr_tf.train import main\n"
              "sys.exit(run_cli(main, sys.argv[1:]))\n")
    out = tmp_path / "two"
    proc = subprocess.run([sys.executable, "-c", script, *args, "--export", "none", "--no-baseline",
                           "--distribute", "mirrored", "--out", str(out)],
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 replicas on 1 worker(s)" in proc.stdout
    two = json.loads((out / "report.json").read_text())
    _history_close(one["history"], two["history"])
    _weights_close(load_keras_model(one_dir), load_keras_model(out), 1e-3 * 2)


def _one_process_reference(argv, run_dir, shards):
    """The model a single process trains with the same flags, seed, initial weights and global batches as
    `shards` workers: each step's batch is the workers' per-replica batches of that step, concatenated
    (Keras `fit` with steps_per_epoch keeps one iterator, as the workers do). Returns (model, history)."""
    import keras
    import tensorflow as tf

    from mgr_tf.data import dataset_info, make_dataset, split_ids
    from mgr_tf.training.fit import callbacks, compile_for, task_callbacks
    from mgr_tf.training.flags import build_parser, parse_args, plan_from_args
    from mgr_tf.training.plan import check
    from mgr_tf.training.runner import build_for_run

    plan = check(plan_from_args(parse_args(build_parser(), argv), argv))
    spec, info = plan.spec, dataset_info(plan.spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(plan.data.seed)  # as runner.fit_and_evaluate does
    tf.config.experimental.enable_op_determinism()
    model = build_for_run(plan, info)
    fit_model = compile_for(spec.task, model, plan.regression, plan.train.learning_rate)
    batch = plan.data.batch_size // shards
    per_worker = dataclasses.replace(plan.data, batch_size=batch)
    streams = tuple(make_dataset(per_worker, "train", shard=(i, shards)).repeat() for i in range(shards))

    def concat(*parts):
        return tuple(tf.nest.map_structure(lambda *t: tf.concat(t, 0), *[p[j] for p in parts])
                     for j in range(len(parts[0])))

    steps = max(math.ceil(len(split_ids(spec, "train", shard=(i, shards))) / batch) for i in range(shards))
    phase_callbacks = [c for c in callbacks(run_dir, "main", spec.task.monitor, plan.train,
                                            task_callbacks(spec.task, fit_model))[0]
                       if not isinstance(c, keras.callbacks.BackupAndRestore)]
    history = fit_model.fit(tf.data.Dataset.zip(streams).map(concat), epochs=plan.train.epochs, steps_per_epoch=steps,
                            validation_data=make_dataset(spec, "validation"), callbacks=phase_callbacks, verbose=0)
    return model, history.history, steps


@pytest.mark.slow
def test_two_workers_train_export_and_match_one_process(tiny_corpus, tmp_path, genre_run):
    from mgr_tf.data import dataset_info
    from mgr_tf.models.build import load_keras_model
    from mgr_tf.serving.requests import load_signature, rest_predict
    from mgr_tf.training.flags import build_parser, parse_args, plan_from_args

    run_dir, exports = tmp_path / "run", tmp_path / "exports"
    base = [*GENRE, "--dropout", "0", "--data-dir", str(tiny_corpus), "--epochs", "2", "--no-baseline"]
    argv = [*base, "--out", str(run_dir), "--export", "genre", "--export-root", str(exports),
            "--distribute", "multiworker"]
    dataset_info(plan_from_args(parse_args(build_parser(), base), base).spec)  # records built before the workers
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    codes = _wait(_start_workers(argv, cluster.local_ports(2), logs), logs)
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    assert "2 replicas on 2 worker(s)" in logs[0].read_text()

    # The chief's run folder is a single-process one: the same report keys, history columns and files.
    report = json.loads((run_dir / "report.json").read_text())
    _, single = genre_run
    assert set(report) == set(single) - {"baseline"} and set(report["history"]) == set(single["history"])
    assert report["epochs_run"] == 2 and report["eval_split"] == "test"
    for name in ("report.md", "config.json", "model.keras", "history_main.csv", "curves.png", "confusion_matrix.png",
                 "checkpoints/best_main.keras"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "logs" / "main").is_dir() and not list(run_dir.glob("workertemp_*"))

    # The chief's export serves.
    signature = load_signature(report["export_dir"])
    x = np.random.default_rng(0).standard_normal((2, 256, 140)).astype(np.float32)
    answer = rest_predict(signature, {"instances": [{"spectrogram": row.tolist()} for row in x]})
    assert len(answer["predictions"]) == 2
    assert all(p["genre"] in report["class_names"] and abs(sum(p["probabilities"]) - 1) < 1e-4
               for p in answer["predictions"])

    # The same weights as one process fed the same global batches (tolerance: see the module docstring).
    reference, history, steps = _one_process_reference(base + ["--out", str(tmp_path / "ref")], tmp_path / "ref", 2)
    _history_close(history, report["history"], ["loss", "accuracy", "val_loss", "val_accuracy"])
    _weights_close(reference, load_keras_model(run_dir), 1e-3 * steps * 2)


@pytest.mark.slow
def test_killed_worker_restarts_from_the_checkpoint(tiny_corpus, tmp_path):
    """Worker 1 is killed after the first epoch's checkpoint: the chief stops with one line; both restarted
    with the same command resume after the checkpointed epoch and finish the run."""
    from mgr_tf.data import dataset_info
    from mgr_tf.training.flags import build_parser, parse_args, plan_from_args

    epochs, run_dir = 4, tmp_path / "run"
    base = [*GENRE, "--data-dir", str(tiny_corpus), "--epochs", str(epochs), "--patience", "100", "--no-baseline"]
    argv = [*base, "--out", str(run_dir), "--export", "none", "--distribute", "multiworker"]
    dataset_info(plan_from_args(parse_args(build_parser(), base), base).spec)
    ports = cluster.local_ports(2)
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    procs = _start_workers(argv, ports, logs)
    state = run_dir / "backup" / "main_distributed" / "checkpoint"
    deadline = time.time() + WORKER_TIMEOUT
    while not state.is_file() and time.time() < deadline and procs[0].poll() is None:
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    assert state.is_file(), logs[0].read_text()[-3000:]
    done = int(state.read_text().split('"ckpt-')[1].split('"')[0])
    assert 1 <= done < epochs, f"the run got to epoch {done} before the kill"
    chief_code = _wait(procs[:1], logs[:1], timeout=180)[0]
    assert chief_code != 0 and "restart every worker" in logs[0].read_text()

    restarted = [tmp_path / "worker0b.log", tmp_path / "worker1b.log"]
    codes = _wait(_start_workers(argv, ports, restarted), restarted)
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in restarted)
    out = restarted[0].read_text()
    resumed = int(out.split("resuming after epoch ")[1].split()[0])
    assert done <= resumed < epochs and f"Epoch {resumed + 1}/{epochs}" in out and "Epoch 1/" not in out
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == epochs
    logged = [int(row["epoch"]) for row in csv.DictReader(open(run_dir / "history_main.csv"))]
    assert sorted(set(logged)) == list(range(epochs)) and len(logged) <= epochs + 1
    assert not list(run_dir.glob("workertemp_*"))
