"""Flags and run folders refused before any work (cases 9 and 10), in-process and without training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.conftest import run_main

TINY = ["--task", "genre", "--features", "fused", "--patch-frames", "0", "--model", "cnn", "--cnn-channels", "4", "8",
        "--epochs", "1", "--no-baseline"]


def train(tiny_corpus, out: Path, *flags):
    from mgr_tf.train import main

    return run_main(main, ["--data-dir", tiny_corpus, *TINY, "--out", out, *flags])


# ------------------------------------------------------------------------------------------ case 9: export names
@pytest.mark.parametrize("name, shown", [(".bad", "'.bad'"), ("a" * 300, "(300 characters)"), ("x/y", "'x/y'"),
                                         ("na me", "'na me'")])
def test_bad_export_name_is_refused_before_training(tiny_corpus, tmp_path, outcome, name, shown):
    out = tmp_path / "run"
    ran = train(tiny_corpus, out, "--export", name, "--export-root", tmp_path / "exports")
    kind = outcome("9", ran.kind("--export", shown))
    assert kind == "clear", ran.err[-2000:]
    assert not out.exists()  # refused before anything was written, not after training


def test_export_root_that_is_a_file_is_refused_before_training(tiny_corpus, tmp_path, outcome):
    (tmp_path / "exports").write_text("not a folder")
    ran = train(tiny_corpus, tmp_path / "run", "--export", "ok", "--export-root", tmp_path / "exports")
    kind = outcome("own", ran.kind("--export-root", "exports"))
    assert kind == "clear", ran.err[-2000:]
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ case 10: flags
@pytest.mark.parametrize("flags, words", [
    (["--lr", "nan"], "learning rate"), (["--lr", "-1"], "learning rate"), (["--lr", "inf"], "learning rate"),
    (["--batch-size", "0"], "batch_size"), (["--epochs", "0"], "epochs"), (["--frame-cap", "0"], "frame_cap"),
    (["--size-cap-mb", "nan"], "size_cap_mb"), (["--val-fraction", "1"], "val_fraction"),
])
def test_bad_flag_values_are_refused_before_any_work(tiny_corpus, tmp_path, outcome, flags, words):
    out = tmp_path / "run"
    ran = train(tiny_corpus, out, *flags)
    kind = outcome("10", ran.kind(words))
    assert kind == "clear", ran.err[-2000:]
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--frame-cap", "0"], ["--size-cap-mb", "-1"], ["--batch-size", "0"],
                                   ["--min-seconds", "nan"], ["--silence-db", "nan"], ["--silence-db", "6"]])
def test_bad_predict_flags_are_refused_before_loading(tmp_path, outcome, flags):
    from mgr_tf.predict import main

    ran = run_main(main, [tmp_path / "no_model", tmp_path / "x.npy", *flags])
    kind = outcome("own", "clear" if ran.code == 2 and flags[0] in ran.err and "Traceback" not in ran.err
                   else ran.kind(flags[0]))
    assert kind == "clear", ran.err[-2000:]


# ------------------------------------------------------------------------------------------ case 10: config.json
@pytest.mark.parametrize("text, words", [
    ("{not json", "not a JSON file"), ('{"task": "genre"}', "lacks data"), ("[1, 2]", "lacks data"),
    (b"\xff\xfe{}", "not a JSON file"),
])
def test_run_config_that_is_not_a_run_config_is_named(tmp_path, outcome, text, words):
    from mgr_tf.export import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    ran = run_main(main, [run, "--root", tmp_path / "exports"])
    kind = outcome("10", ran.kind("config.json", words))
    assert kind == "clear", (ran.err[-2000:], ran.exc)


def test_rerun_into_a_folder_with_unreadable_config_is_refused(tiny_corpus, tmp_path, outcome):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{truncated")
    ran = train(tiny_corpus, out)
    kind = outcome("3", ran.kind("config.json", "not a run's config"))
    assert kind == "clear", ran.err[-2000:]
    assert (out / "config.json").read_text() == "{truncated" and not (out / "model.keras").exists()


def test_rerun_into_a_folder_of_another_configuration_is_refused(tiny_corpus, tmp_path, outcome):
    """A run folder whose config.json (as a run writes it) holds another learning rate: refused, untouched."""
    from mgr_tf.training.flags import build_parser, parse_args, plan_from_args
    from mgr_tf.training.plan import check
    from mgr_tf.training.rundir import identity

    out = tmp_path / "run"
    plan = check(plan_from_args(parse_args(build_parser(), [
        "--data-dir", str(tiny_corpus), *TINY, "--lr", "0.01", "--out", str(out)]), []))
    out.mkdir()
    stored = {**identity(plan), "task": "genre", "history": "kept"}
    (out / "config.json").write_text(json.dumps(stored))
    ran = train(tiny_corpus, out, "--lr", "0.002")
    kind = outcome("3", ran.kind(str(out), "another configuration", "train.learning_rate: 0.01 -> 0.002"))
    assert kind == "clear", ran.err[-2000:]
    assert json.loads((out / "config.json").read_text()) == stored and not (out / "model.keras").exists()


# ------------------------------------------------------------------------------------------ case 6 and 10: ingest CSVs
def _audio_folder(tmp_path: Path, rows: list[str]) -> Path:
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "audio"
    audio.mkdir()
    noise = (0.1 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        sf.write(audio / name, noise, 22050)
    sf.write(tmp_path / "secret.wav", noise, 22050)  # beside the audio folder, not in it
    (audio / "labels.csv").write_text("path,genre\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return audio


def test_ingest_rows_leading_outside_the_audio_folder_are_not_read(tmp_path, outcome):
    from mgr_tf.audio.labels import read_labels
    from mgr_tf.audio.tracks import IngestConfig

    secret = tmp_path / "secret.wav"
    audio = _audio_folder(tmp_path, ["a.wav,Rock", "b.wav,Jazz", "c.wav,Rock", "d.wav,Jazz", "../secret.wav,Rock",
                                     f"{secret},Jazz", "sub/../../secret.wav,Rock"])
    sets = read_labels(audio, [audio / "labels.csv"], IngestConfig(task="genre"))
    label_set = sets[0] if isinstance(sets, list) else sets  # (one LabelSet before the label sets were listed)
    read = {Path(track.path).name for track in label_set.tracks}
    refused = [p for p in label_set.problems if "leads outside the audio folder" in p.reason]
    lines = sorted(p.source.rsplit(":", 1)[1] for p in refused)
    kind = "security" if "secret.wav" in read else ("clear" if lines == ["6", "7", "8"] else "unclear")
    outcome("6", kind)
    assert kind == "clear" and read == {"a.wav", "b.wav", "c.wav", "d.wav"}


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\t"])
def test_ingest_refuses_a_genre_name_the_readers_would_refuse(tmp_path, outcome, separator):
    from mgr_tf.ingest import main

    audio = _audio_folder(tmp_path, ["a.wav,Rock", f'b.wav,"Hip{separator}Hop"', "c.wav,Rock"])
    ran = run_main(main, [audio, audio / "labels.csv", "--out", tmp_path / "root", "--quiet"])
    kind = outcome("10", ran.kind("labels.csv:3", f"U+{ord(separator):04X}"))
    assert kind == "clear", ran.err[-2000:]
    assert not (tmp_path / "root" / "fma_genre_spectrograms" / "train_labels.txt").exists()
