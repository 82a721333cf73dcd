"""Regression targets named by the data: a CSV with made-up target columns goes ingest -> train (one target,
every target with weights by name, learned weights, a keras-tuner study, the musicnn encoder) -> export ->
predict, and every output names the user's targets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from mgr_tf.core.cli import run_cli
from mgr_tf.data import readers
from mgr_tf.ingest import main as ingest_main

SR = 22050
SECONDS = 3.0
GENRES = ("blues", "disco", "metal", "reggae")
TARGETS = ("sparkle", "grit", "rating")  # rating is stored on 0..10 in the CSV: --target-range rating=0:10
MULTI = "multitask_dataset"


def _clips(folder, n_per_genre: int, first: int = 0):
    """Tones whose pitch follows the genre and whose noise follows 'grit': rows (path, genre, sparkle, grit,
    rating 0..10, comment)."""
    rng = np.random.default_rng(first)
    t = np.arange(int(SECONDS * SR)) / SR
    rows = []
    for g, genre in enumerate(GENRES):
        for j in range(first, first + n_per_genre):
            grit = round(float(rng.uniform(0.05, 0.95)), 3)
            x = 0.3 * np.sin(2 * np.pi * 110.0 * (g + 1) * t) + 0.3 * grit * rng.standard_normal(t.size)
            path = f"{genre}/{genre}_{j}.wav"
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(folder / path, x.astype(np.float32), SR)
            rows.append((path, genre, round(0.2 + 0.2 * g, 3), grit, round(10 * (1 - grit), 2), f"take {j}"))
    return rows


def _csv(path, rows):
    path.write_text("path,genre,sparkle,grit,rating,comment\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def target_root(tmp_path_factory):
    """4 genres x 5 clips of 3 s, genre and three targets in one CSV, ingested in one pass: (audio, rows, root)."""
    tmp = tmp_path_factory.mktemp("targets")
    audio = tmp / "audio"
    rows = _clips(audio, 5)
    root = tmp / "root"
    assert ingest_main([str(audio), str(_csv(audio / "labels.csv", rows)), "--out", str(root),
                        "--clip-seconds", str(SECONDS), "--workers", "1", "--quiet",
                        "--target-range", "rating=0:10"]) == 0
    return audio, rows, root


def _stored(root, sub=MULTI):
    """{source path: (split, values)} of every stored clip of a regression sub-dataset, via the manifest."""
    from mgr_tf.audio.convert import read_manifest

    _, records = read_manifest(root, "multitask")
    values = {}
    for split in ("train", "test"):
        for _, track_id, v in readers.read_emotion_labels(root / sub / f"{split}_labels.txt")[0]:
            values[str(track_id)] = (split, v)
    return {r["source"]: values[str(r["id"])] for r in records.values()}


def test_one_csv_gives_genre_and_target_sub_datasets_in_one_pass(target_root):
    audio, rows, root = target_root
    summary = json.loads((root / "ingest_summary.json").read_text())
    assert summary["converted"] == len(rows)  # one decode per file, both kinds written from it
    for sub in ("fma_genre_spectrograms", MULTI):
        assert summary["counts"][sub]["train"] + summary["counts"][sub]["test"] == len(rows)
    assert readers.regression_targets(root, MULTI) == TARGETS
    assert readers.regression_targets(root, f"{MULTI}_beat") == TARGETS
    assert (root / "fma_genre_spectrograms" / "genres.txt").read_text().split() == list(GENRES)
    # The text column is left out with a note; rating is scaled from its declared range 0..10 to [0, 1].
    assert any("comment" in note and "not numeric" in note for note in summary["notes"]), summary["notes"]
    assert json.loads((root / MULTI / "targets.json").read_text())["rating"] == {"min": 0.0, "max": 10.0}
    stored = _stored(root)
    for path, _, sparkle, grit, rating, _ in rows:
        np.testing.assert_allclose(stored[path][1], (sparkle, grit, rating / 10), atol=1e-6)
    # The arrays of the two kinds are the same files (linked, not copied): one pass over the audio.
    a = next((root / MULTI / "train").glob("*.fused.full.npy"))
    b = root / "fma_genre_spectrograms" / stored_split(root, a.name) / a.name
    assert a.stat().st_ino == b.stat().st_ino


def stored_split(root, name):
    """The genre sub-dataset's split folder that holds the array `name`."""
    return next(s for s in ("train", "test") if (root / "fma_genre_spectrograms" / s / name).exists())


def test_more_clips_merge_into_the_root_and_keep_what_was_there(target_root, tmp_path):
    audio, rows, root = target_root
    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    before = _stored(copy)
    more = _clips(audio, 2, first=10)
    assert ingest_main([str(audio), str(_csv(tmp_path / "more.csv", more)), "--out", str(copy),
                        "--clip-seconds", str(SECONDS), "--workers", "1", "--quiet",
                        "--target-range", "rating=0:10"]) == 0
    after = _stored(copy)
    assert len(after) == len(rows) + len(more)
    assert {p: after[p] for p in before} == before  # nothing that was there moved or changed
    assert readers.regression_targets(copy, MULTI) == TARGETS


def test_a_bad_value_skips_that_clip_of_that_kind_only_and_names_file_and_line(target_root, tmp_path):
    audio, rows, _ = target_root
    rows = [list(r) for r in rows[:12]]
    rows[1][2] = 1.7  # line 3: a typo in a column whose other values lie in [0, 1]
    labels = _csv(tmp_path / "labels.csv", rows)
    root = tmp_path / "root"
    assert ingest_main([str(audio), str(labels), "--out", str(root), "--clip-seconds", str(SECONDS), "--workers", "1",
                        "--quiet", "--target-range", "rating=0:10"]) == 0
    summary = json.loads((root / "ingest_summary.json").read_text())
    assert summary["problems"]["bad label"] == [{"source": f"{labels}:3", "reason": "sparkle 1.7 is outside [0, 1]"}]
    counts = {sub: sum(summary["counts"][sub].values()) for sub in ("fma_genre_spectrograms", MULTI)}
    assert counts == {"fma_genre_spectrograms": 12, MULTI: 11}  # its genre label is good and kept
    assert readers.regression_targets(root, MULTI) == TARGETS


@pytest.mark.parametrize("header, row, message", [
    ("path,sparkle,sparkle", "blues/blues_0.wav,0.1,0.2", "labels.csv:1: target 'sparkle' is named twice"),
    ("path,genre,sparkle", "blues/blues_0.wav,blues,x", "column 'sparkle' is named by --targets but holds values"),
    ("path,genre,sparkle", "blues/blues_0.wav,blues,0.1", "labels.csv:1: no column 'grit'"),
])
def test_bad_target_columns_are_one_line_naming_the_file(target_root, tmp_path, capsys, header, row, message):
    audio, _, _ = target_root
    labels = tmp_path / "labels.csv"
    labels.write_text(f"{header}\n{row}\ndisco/disco_1.wav,disco,0.3\n")
    targets = ["sparkle", "grit"] if "grit" in message else ["sparkle"]
    code = run_cli(ingest_main, [str(audio), str(labels), "--out", str(tmp_path / "o"), "--targets", *targets])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_reserved_and_repeated_names_and_the_published_header():
    from mgr_tf.data.layout import check_target_names

    assert check_target_names(("valence", "energy", "danceability"), "x") == ("valence", "energy", "danceability")
    for names, problem in ((("genre",), "reserved"), (("a", "a"), "named twice"), (("2x",), "plain name"),
                           ((), "no regression targets")):
        with pytest.raises(ValueError, match=problem):
            check_target_names(names, "labels.csv:1")


def test_model_auto_picks_the_encoder_where_the_root_holds_its_input(target_root, tiny_corpus):
    from mgr_tf.training.flags import auto_model

    _, _, root = target_root
    family, why = auto_model(str(root), "regression", False)
    assert family == "musicnn" and "holds the musicnn encoder input" in why
    assert auto_model(str(root), "genre", True)[0] == "cnn"  # beat-synchronous clips: no encoder input
    family, why = auto_model(str(tiny_corpus), "genre", False)
    assert family == "cnn" and "holds no encoder input" in why
    assert auto_model(None, "genre", False) == ("cnn", "--model auto: the embedded synthetic corpus holds no encoder "
                                                       "input")


def test_task_names_and_loss_weights_by_target():
    from mgr_tf.tasks import task_for

    task = task_for("regression", TARGETS, ())
    assert task.outputs == TARGETS and task.stratify_on == "sparkle"
    assert task_for("grit", TARGETS, ()).outputs == ("grit",)
    assert task_for("regression", TARGETS, ("rating", "grit")).outputs == ("rating", "grit")
    with pytest.raises(ValueError, match="its targets: sparkle, grit, rating"):
        task_for("valence", TARGETS, ())  # not a target of this data: the message lists what is


# ---------------------------------------------------------------------------------------------- end to end
TINY = ["--model", "cnn", "--features", "fused", "--patch-frames", "0", "--cnn-channels", "4", "4", "8", "8", "--batch-size", "4",
        "--val-fraction", "0.25", "--epochs", "2"]


@pytest.mark.slow
def test_made_up_targets_go_from_audio_to_served_predictions(target_root, tmp_path, capsys):
    from mgr_tf.predict import main as predict_main
    from mgr_tf.tune import main as tune_main
    from tests.conftest import run_train

    audio, rows, root = target_root
    exports = tmp_path / "exports"
    runs = {
        "one": run_train(["--data-dir", str(root), "--task", "grit", *TINY], tmp_path, "one", export="one"),
        "all": run_train(["--data-dir", str(root), "--task", "regression", "--loss-weights", "sparkle=2", "grit=1",
                          "rating=0.5", *TINY], tmp_path, "all", export="all", baseline=True),
        "learned": run_train(["--data-dir", str(root), "--task", "regression", "--learned-weights", *TINY],
                             tmp_path, "learned"),
        "encoder": run_train(["--data-dir", str(root), "--task", "regression", "--targets", "rating", "sparkle",
                              "--model", "musicnn", "--no-musicnn-pretrained", "--musicnn-encoder", "MSD_musicnn",
                              "--epochs", "2", "--batch-size", "4",
                              "--val-fraction", "0.25"], tmp_path, "encoder", export="encoder"),
    }
    assert set(runs["one"][1]["metrics"]) == {"grit"}
    for name in ("all", "learned"):
        report = runs[name][1]
        assert report["targets"] == list(TARGETS) and set(report["metrics"]) == set(TARGETS)
        assert {"mean Spearman", "mean R²"} <= set(report["headline"])
    assert set(runs["all"][1]["baseline"]["metrics"]) == set(TARGETS)
    config = json.loads((runs["all"][0] / "config.json").read_text())
    assert config["regression"]["loss_weights"] == {"sparkle": 2.0, "grit": 1.0, "rating": 0.5}
    assert config["targets"] == config["data_targets"] == list(TARGETS) and config["data"]["targets"] == []
    history = (runs["learned"][0] / "history_main.csv").read_text().splitlines()[0]
    assert all(f"weight_{t}" in history for t in TARGETS), history
    assert runs["encoder"][1]["targets"] == ["rating", "sparkle"]

    study = tmp_path / "study.json"
    study.write_text(json.dumps({"name": "made_up", "model": "cnn", "oracle": "random", "max_trials": 2, "epochs": 1,
                                 "batch_size": 4, "features": "fused", "beat": True, "max_frames": 64,
                                 "model_overrides": {"cnn_channels": [4, 4, 8, 8]},
                                 "search_space": {"weights": {"type": "simplex"}}, "references": False}))
    assert tune_main([str(study), "--data-dir", str(root), "--out", str(tmp_path / "tune"),
                      "--export", "tuned", "--export-root", str(exports)]) == 0
    trials = [json.loads(p.read_text()) for p in (tmp_path / "tune" / "tuner").glob("trial_*/trial.json")]
    assert len(trials) == 2
    for trial in trials:
        weights = [trial["hyperparameters"]["values"][f"u_{t}"] for t in TARGETS]
        assert len(weights) == 3

    for name, expected in (("one", ("grit",)), ("all", TARGETS), ("encoder", ("rating", "sparkle")),
                           ("tuned", TARGETS)):
        export = next((exports / name).iterdir())
        assert (export / "assets" / "targets.txt").read_text().split() == list(expected), name
        capsys.readouterr()
        assert predict_main([str(export), str(audio / rows[0][0]), "--json"]) == 0
        [result] = json.loads(capsys.readouterr().out)["results"]
        assert set(result) - {"input", "windows"} == set(expected), result
        assert all(0.0 <= result[t] <= 1.0 for t in expected)
