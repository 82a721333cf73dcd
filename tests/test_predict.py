"""`python -m mgr_tf.predict` on spectrogram and audio files, and its bad-input messages."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mgr_tf.core.cli import run_cli
from mgr_tf.data.readers import load_spectrogram
from mgr_tf.predict import main
from tests.conftest import export_dir


def _sample(corpus: Path, sub="fma_genre_spectrograms") -> Path:
    return sorted((corpus / sub / "test").glob("*.npy*"))[0]


def test_predict_spectrogram_both_orientations_and_gzip(genre_run, tiny_corpus, tmp_path, capsys):
    array = load_spectrogram(_sample(tiny_corpus))
    np.save(tmp_path / "bt.npy", array)
    np.save(tmp_path / "tb.npy", array.T)
    (tmp_path / "gz.npy.gz").write_bytes(gzip.compress((tmp_path / "bt.npy").read_bytes()))
    files = [str(tmp_path / n) for n in ("bt.npy", "tb.npy", "gz.npy.gz")]
    assert run_cli(main, [str(export_dir(genre_run).parent), *files, "--json", "--top-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "genre" and len(out["results"]) == 3
    probs = [r["probabilities"] for r in out["results"]]
    assert probs[0] == pytest.approx(probs[1]) and probs[0] == pytest.approx(probs[2])
    assert len(out["results"][0]["top_k"]) == 2 and sum(probs[0].values()) == pytest.approx(1.0, abs=1e-4)
    assert out["results"][0]["genre"] == out["results"][0]["top_k"][0]


def test_predict_text_output_lists_top_k(genre_run, tiny_corpus, capsys):
    assert run_cli(main, [str(export_dir(genre_run)), str(_sample(tiny_corpus)), "--top-k", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.count(",") == 2 and str(_sample(tiny_corpus)) in line


def test_predict_emotions_from_beat_spectrogram(multitask_run, tiny_corpus, capsys):
    path = _sample(tiny_corpus, "multitask_dataset_beat")
    assert run_cli(main, [str(export_dir(multitask_run)), str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert set(result) >= {"valence", "energy", "danceability"} and 0 <= result["energy"] <= 1


def _write_wav(path: Path, seconds: float, sr=22050):
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2
    sf.write(path, tone.astype(np.float32), sr)
    return path


def test_predict_audio_whole_track_is_windowed_and_averaged(genre_run, tmp_path, capsys):
    wav = _write_wav(tmp_path / "song.wav", 72.0)  # two 30 s windows + a 12 s tail
    assert run_cli(main, [str(export_dir(genre_run)), str(wav), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert len(result["windows"]) == 3
    mean = np.mean([[w["probabilities"][g] for g in result["probabilities"]] for w in result["windows"]], axis=0)
    np.testing.assert_allclose(list(result["probabilities"].values()), mean, atol=1e-5)


def test_predict_audio_with_beat_model_computes_features_in_python(multitask_run, tmp_path, capsys):
    wav = _write_wav(tmp_path / "clip.wav", 8.0)  # shorter than the 30 s clip: kept with --min-seconds
    assert run_cli(main, [str(export_dir(multitask_run)), str(wav), "--json", "--min-seconds", "5"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert len(result["windows"]) == 1 and 0 <= result["valence"] <= 1


def test_wrong_band_count_empty_and_missing_inputs(genre_run, tmp_path, capsys):
    np.save(tmp_path / "bands.npy", np.zeros((50, 300), np.float32))
    (tmp_path / "empty.npy").write_bytes(b"")
    code = run_cli(main, [str(export_dir(genre_run)), str(tmp_path / "bands.npy"), str(tmp_path / "empty.npy"),
                          str(tmp_path / "missing.npy")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert "bands.npy" in lines[0] and "140" in lines[0]
    assert "empty.npy" in lines[1] and "empty" in lines[1]
    assert "missing.npy" in lines[2] and "not found" in lines[2]


def test_missing_and_corrupt_model_folders(tmp_path, tiny_corpus, capsys):
    assert run_cli(main, [str(tmp_path / "nope"), str(_sample(tiny_corpus))]) == 2
    assert "model folder not found" in capsys.readouterr().err
    (tmp_path / "empty_model").mkdir()
    assert run_cli(main, [str(tmp_path / "empty_model"), str(_sample(tiny_corpus))]) == 2
    assert "not a SavedModel" in capsys.readouterr().err
    broken = tmp_path / "broken" / "1"
    (broken / "assets").mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    (broken / "assets" / "config.json").write_text("{}")
    assert run_cli(main, [str(broken.parent), str(_sample(tiny_corpus))]) == 2
    err = capsys.readouterr().err
    assert "cannot load the SavedModel" in err and "Traceback" not in err
