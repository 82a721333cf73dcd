"""Runs, exports and serving (cases 1, 3, 4, 7, 8, 10): real trainings, exports and processes, all slow."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import REPO, copy_root, label_rows, run_main, subprocess_env

pytestmark = pytest.mark.slow

GENRE = "fma_genre_spectrograms"
TINY = ["--task", "genre", "--features", "fused", "--patch-frames", "0", "--model", "cnn", "--cnn-channels", "4", "8",
        "--max-frames", "256", "--batch-size", "16", "--no-baseline", "--export", "none"]


def history_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "history_main.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


# ------------------------------------------------------------------------------------------ a mel model, exported
@pytest.fixture(scope="module")
def mel_export(tiny_corpus, tmp_path_factory):
    """(run folder, export version folder) of a tiny CNN on mel bands (derived from the fused arrays), 2 epochs."""
    from mgr_tf.train import main

    tmp = tmp_path_factory.mktemp("mel")
    argv = ["--data-dir", tiny_corpus, *TINY[:-2], "--features", "mel", "--epochs", "2", "--out", tmp / "run",
            "--export", "mel", "--export-root", tmp / "exports"]
    assert main([str(a) for a in argv]) == 0
    report = json.loads((tmp / "run" / "report.json").read_text())
    return tmp / "run", Path(report["export_dir"])


def fused_sample(tiny_corpus) -> np.ndarray:
    from mgr_tf.data.readers import load_spectrogram, resolve_sample_path

    name = label_rows(tiny_corpus / GENRE / "test_labels.txt")[0].split("\t")[0]
    return load_spectrogram(resolve_sample_path(tiny_corpus / GENRE / "test" / name))  # (140, 259)


# ------------------------------------------------------------------------------------------ case 8: serving garbage
def test_serving_refuses_garbage_spectrograms_and_waveforms(mel_export, tiny_corpus, outcome):
    import tensorflow as tf

    from mgr_tf.serving.requests import RequestError, load_signature, rest_predict

    _, version = mel_export
    loaded = tf.saved_model.load(str(version))
    mel = fused_sample(tiny_corpus)[:128].T[None]  # (1, 259, 128)
    cases = {
        ("serving_default", "NaN or Inf"): np.where(np.arange(128) == 5, np.nan, mel).astype(np.float32),
        ("serving_default", "NaN or Inf "): np.full_like(mel, np.inf),
        ("serving_default", "values beyond"): np.full_like(mel, 1e30),
        ("serving_default", "no frames"): np.zeros((1, 0, 128), np.float32),
        ("serving_default", "every frame is zero"): np.zeros((1, 40, 128), np.float32),
        ("serving_waveform", "too short"): np.zeros((1, 0), np.float32),
        ("serving_waveform", "too short "): np.full((1, 1), 0.5, np.float32),
        ("serving_waveform", "silent"): np.zeros((1, 22050 * 2), np.float32),
        ("serving_waveform", "NaN or Inf samples"): np.full((1, 22050 * 2), np.nan, np.float32),
    }
    refused = 0
    for (name, words), x in cases.items():
        fn = loaded.signatures[name]
        key = next(iter(fn.structured_input_signature[1]))
        try:
            fn(**{key: tf.constant(x)})
        except tf.errors.InvalidArgumentError as exc:
            refused += words.strip() in exc.message
    outcome("8", "clear" if refused == len(cases) else "silent")
    assert refused == len(cases)
    # As TF Serving answers: HTTP 400 with the check's message; a good input is still answered.
    signature = load_signature(version)
    with pytest.raises(RequestError, match="values beyond"):
        rest_predict(signature, {"instances": np.full((1, 30, 128), 1e30).tolist()})
    answer = rest_predict(signature, {"instances": mel.tolist()})
    assert len(answer["predictions"]) == 1 and answer["predictions"][0]["genre"]


def test_predict_refuses_audio_that_ingest_refuses(mel_export, tmp_path, outcome):
    import soundfile as sf

    from mgr_tf.predict import main

    _, version = mel_export
    sf.write(tmp_path / "one.wav", np.array([0.5], np.float32), 22050)
    sf.write(tmp_path / "silent.wav", np.zeros(22050 * 8, np.float32), 22050)
    kinds = []
    for name, words in (("one.wav", "short"), ("silent.wav", "silent")):
        ran = run_main(main, [version, tmp_path / name])
        kinds.append(ran.kind(name, words))
    outcome("8", kinds[0] if kinds[0] == kinds[1] else next(k for k in kinds if k != "clear"))
    assert kinds == ["clear", "clear"]


# ------------------------------------------------------------------------------------------ case 10: predict
def test_predict_reads_time_major_arrays_the_right_way_round(mel_export, tiny_corpus, tmp_path, outcome, capsys):
    from mgr_tf.core.cli import run_cli
    from mgr_tf.predict import main

    _, version = mel_export
    fused = fused_sample(tiny_corpus)
    arrays = {"mel_bt": fused[:128, :140], "mel_tb": fused[:128, :140].T,  # 140 frames of 128 bands
              "fused_bt": fused[:, :128], "fused_tb": fused[:, :128].T}  # 128 frames of 140 fused bands
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    assert run_cli(main, [str(version), *(str(tmp_path / f"{n}.npy") for n in arrays), "--json"]) == 0
    results = {Path(r["input"]).stem if "input" in r else i: r["probabilities"]
               for i, r in enumerate(json.loads(capsys.readouterr().out)["results"])}
    probs = list(results.values())
    right = (probs[0] == pytest.approx(probs[1], abs=1e-5)) and (probs[2] == pytest.approx(probs[3], abs=1e-5))
    outcome("10", "ok" if right else "silent")
    assert right


def test_tags_on_a_genre_export_is_one_line(mel_export, tmp_path, outcome):
    import soundfile as sf

    from mgr_tf.predict import main

    _, version = mel_export
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "song.wav", (0.3 * rng.standard_normal(22050 * 4)).astype(np.float32), 22050)
    ran = run_main(main, [version, tmp_path / "song.wav", "--tags"])
    kind = outcome("10", ran.kind(str(version)))
    assert kind == "clear", (ran.err[-2000:], ran.exc)


def test_export_removes_stale_temporary_folders_and_keeps_live_ones(mel_export, outcome):
    from mgr_tf.export import main
    from mgr_tf.serving import export

    run, version = mel_export
    model_root = version.parent
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = model_root / f".tmp-{export._host()}-{dead.pid}-0badc0de"
    old = model_root / ".tmp-deadbeef"  # the form of older versions: removed after a day
    live = model_root / f".tmp-{export._host()}-1-0000live"  # pid 1 is alive
    for folder in (stale, old, live):
        (folder / "variables").mkdir(parents=True)
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    ran = run_main(main, [run, "--name", "mel", "--root", model_root.parent])
    assert ran.code == 0, ran.err[-2000:]
    gone = not stale.exists() and not old.exists() and live.exists()
    outcome("10", "ok" if gone else "lost")
    assert gone and (model_root / "2" / "saved_model.pb").is_file()
    shutil.rmtree(live)


def test_export_under_a_name_that_serves_another_task_is_refused_before_training(mel_export, tiny_corpus,
                                                                                 tmp_path, outcome):
    from mgr_tf.train import main

    _, version = mel_export
    argv = ["--data-dir", tiny_corpus, "--task", "valence", "--features", "mel", "--patch-frames", "0", "--model",
            "cnn", "--cnn-channels", "4", "8", "--epochs", "1", "--no-baseline", "--out", tmp_path / "run",
            "--export", "mel", "--export-root", version.parent.parent]
    ran = run_main(main, argv)
    kind = outcome("3", ran.kind(str(version.parent), "serves task"))
    assert kind == "clear", ran.err[-2000:]
    assert not (tmp_path / "run" / "model.keras").exists()  # refused before training


# ------------------------------------------------------------------------------------------ case 3: run folders
def test_rerun_with_other_data_or_lr_is_refused_and_the_run_kept(mel_export, tiny_corpus, tmp_path, outcome):
    from mgr_tf.train import main

    run, _ = mel_export
    before = {p.name: p.read_bytes() for p in (run / "report.json", run / "config.json", run / "history_main.csv")}
    other = copy_root(tiny_corpus, tmp_path / "other")
    base = [*TINY[:-2], "--features", "mel", "--epochs", "2", "--out", run, "--export", "none"]
    kinds = []
    for flags, words in ((["--data-dir", other], "data_fingerprint"),
                         (["--data-dir", tiny_corpus, "--lr", "0.01"], "train.learning_rate"),
                         (["--data-dir", tiny_corpus, "--cnn-channels", "4", "8", "8"], "model.")):
        ran = run_main(main, [*base, *flags])
        kinds.append(ran.kind(str(run), "another configuration", words))
    outcome("3", "clear" if kinds == ["clear"] * 3 else next(k for k in kinds if k != "clear"))
    assert kinds == ["clear"] * 3
    assert {p: (run / p).read_bytes() for p in before} == before


# ------------------------------------------------------------------------------------------ case 4: best epoch
def test_a_resumed_phase_keeps_the_best_epoch_of_the_whole_run(tmp_path, outcome):
    """Validation targets are the negated training targets, so validation loss is best at the first epoch and
    worsens as the model fits: a resume that forgets the best would keep an epoch after the kill."""
    import keras

    from mgr_tf.core.config import TrainConfig
    from mgr_tf.training.fit import callbacks

    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 1)).astype(np.float32)
    x, xv = rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(32, 8)).astype(np.float32)
    train = TrainConfig(epochs=8, patience=100, lr_patience=100)

    class Killed(Exception):
        pass

    class KillAt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 4:
                raise Killed

    def fit(run_dir: Path, extra=()):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.05), "mse")
        cbs, _ = callbacks(run_dir, "main", ("val_loss", "min"), train, extra=extra)
        model.fit(x, x @ w, validation_data=(xv, -(xv @ w)), epochs=8, batch_size=16, verbose=0, callbacks=cbs)
        stop = next(cb for cb in cbs if isinstance(cb, keras.callbacks.EarlyStopping))
        best = keras.saving.load_model(run_dir / "checkpoints" / "best_main.keras").get_weights()
        return stop.best_epoch, stop.best, best

    whole = fit(tmp_path / "whole")
    with pytest.raises(Killed):
        fit(tmp_path / "killed", extra=[KillAt()])
    resumed = fit(tmp_path / "killed")
    same = (resumed[:2] == pytest.approx(whole[:2])
            and all(np.allclose(a, b, atol=1e-6) for a, b in zip(resumed[2], whole[2])))
    outcome("4", "ok" if same else "silent")
    assert whole[0] == 0 and same
    assert history_epochs(tmp_path / "killed") == list(range(8))


# ------------------------------------------------------------------------------------------ case 7: concurrency
def test_second_training_into_a_busy_run_folder_is_refused_and_a_kill_resumes(tiny_corpus, tmp_path, outcome):
    from mgr_tf.train import main

    run = tmp_path / "run"
    argv = ["--data-dir", tiny_corpus, *TINY, "--epochs", "10", "--patience", "100", "--out", run]
    first = subprocess.Popen([sys.executable, "-m", "mgr_tf.train", *map(str, argv)], env=subprocess_env(),
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not ((run / "history_main.csv").is_file() and len(history_epochs(run)) >= 1):
            assert first.poll() is None and time.time() < deadline, first.stderr.read()[-2000:]
            time.sleep(0.2)
        second = run_main(main, argv)
        still_running = first.poll() is None
        first.send_signal(signal.SIGKILL)  # killed mid-run, at whatever it was writing
    finally:
        first.kill()
        first.wait()
    kind = outcome("7", second.kind(str(run), "another training"))
    assert still_running and kind == "clear", second.err[-2000:]
    killed_at = history_epochs(run)
    assert killed_at == list(range(len(killed_at)))  # the refused run wrote nothing into the first's history
    resumed = run_main(main, argv)
    assert resumed.code == 0, resumed.err[-2000:]
    report = json.loads((run / "report.json").read_text())
    assert history_epochs(run) == list(range(10)) and report["epochs_run"] == 10


def test_three_concurrent_first_builds_of_one_root_all_succeed(tiny_corpus, tmp_path, outcome):
    root = copy_root(tiny_corpus, tmp_path / "root")
    code = ("import sys; from mgr_tf.core.config import DataConfig; from mgr_tf.data.prepare import prepare; "
            "p = prepare(DataConfig(data_dir=sys.argv[1], task='genre', features='fused', patch_frames=0)); "
            "print(len(p.index['train']['track_id']), len(p.index['test']['track_id']))")
    env = subprocess_env({"MGR_TF_HOME": str(tmp_path / "home")})
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=600), p.stdout.read().strip().splitlines()[-1:], p.stderr.read()) for p in procs]
    ok = [r[:2] for r in results] == [(0, ["40 20"])] * 3
    outcome("7", "ok" if ok else ("traceback" if any("Traceback" in r[2] for r in results) else "unclear"))
    assert ok, [(r[0], r[1][-300:], r[2][-300:]) for r in results]
    assert not list((tmp_path / "home").rglob("incomplete.*"))


# ------------------------------------------------------------------------------------------ case 1: ingest
def test_two_ingests_into_one_existing_root_at_once_keep_every_label(tiny_corpus, tmp_path, outcome):
    import soundfile as sf

    root = copy_root(tiny_corpus, tmp_path / "root")
    rng = np.random.default_rng(1)
    t = np.arange(6 * 22050) / 22050
    folders = []
    for batch in ("a", "b"):
        folder = tmp_path / f"audio_{batch}"
        folder.mkdir()
        rows = []
        for i in range(3):
            x = 0.3 * np.sin(2 * np.pi * (110 + 60 * i + (batch == "b") * 30) * t) + 0.1 * rng.standard_normal(t.size)
            sf.write(folder / f"{batch}{i}.wav", x.astype(np.float32), 22050)
            rows.append(f"{batch}{i}.wav,{('Rock', 'Jazz', 'Rock')[i]}")
        (folder / "labels.csv").write_text("path,genre\n" + "\n".join(rows) + "\n")
        folders.append(folder)
    env = subprocess_env()
    procs = [subprocess.Popen([sys.executable, "-m", "mgr_tf.ingest", str(f), str(f / "labels.csv"), "--out",
                               str(root), "--clip-seconds", "6", "--no-encoder", "--workers", "1", "--quiet"],
                              env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f in folders]
    codes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert [c for c, _ in codes] == [0, 0], [e[-1500:] for _, e in codes]
    counts = {sub: sum(len(label_rows(root / sub / f"{s}_labels.txt")) for s in ("train", "test"))
              for sub in (GENRE, GENRE + "_beat")}
    outcome("1", "ok" if counts == {GENRE: 66, GENRE + "_beat": 66} else "lost")
    assert counts == {GENRE: 66, GENRE + "_beat": 66}
    from mgr_tf.data import readers

    listed = [len(readers.list_split(root, GENRE, split).examples) for split in ("train", "test")]
    assert sum(listed) == 66  # every label still names its clip and genre in the merged vocabulary


# ------------------------------------------------------------------------------------------ own: kills at writes
def test_a_build_killed_mid_write_is_rebuilt_and_its_leftovers_removed(tiny_corpus, tmp_path, outcome, monkeypatch):
    from mgr_tf.core.config import DataConfig
    from mgr_tf.data.prepare import prepare

    root = copy_root(tiny_corpus, tmp_path / "root")
    home = tmp_path / "home"
    code = ("import sys; from mgr_tf.core.config import DataConfig; from mgr_tf.data.prepare import prepare; "
            "prepare(DataConfig(data_dir=sys.argv[1], task='genre', features='fused', patch_frames=0))")
    build = subprocess.Popen([sys.executable, "-c", code, str(root)], env=subprocess_env({"MGR_TF_HOME": str(home)}),
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not list(home.rglob("incomplete.*")):
            assert build.poll() is None and time.time() < deadline, "the build ended before it could be killed"
            time.sleep(0.02)
        build.send_signal(signal.SIGKILL)  # in the middle of writing its records
    finally:
        build.kill()
        build.wait()
    assert list(home.rglob("incomplete.*"))  # what the kill left
    monkeypatch.setenv("MGR_TF_HOME", str(home))
    prepared = prepare(DataConfig(data_dir=str(root), task="genre", features="fused", patch_frames=0))
    right = (len(prepared.index["train"]["track_id"]), len(prepared.index["test"]["track_id"])) == (40, 20)
    clean = not list(home.rglob("incomplete.*"))
    outcome("own", "ok" if right and clean else ("lost" if not right else "silent"))
    assert right and clean
