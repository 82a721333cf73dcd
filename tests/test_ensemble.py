"""Ensembles: the three rules on hand-made probabilities, refusal of mismatched runs, and one end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mgr_tf.analysis.rules import decide
from mgr_tf.core.cli import run_cli
from mgr_tf.core.published import GENRES_10

# 3 members x 4 examples x 3 classes, each example built so the three rules are known by hand.
PROBS = np.array([
    # ex 0: votes 0,1,1 -> vote 1; mean (.37,.42,.22) -> 1; most confident member 0 (.6) -> 0
    # ex 1: votes 1,2,0 (three-way tie), summed (1.4,.85,.75) -> vote 0; mean 0; most confident member 2 (.9) -> 0
    # ex 2: votes 2,2,0 -> vote 2; mean (.4,.07,.53) -> 2; most confident member 2 (.98) -> 0
    # ex 3: votes 0,1,2 (three-way tie), summed (1.0,1.1,.9) -> vote 1; mean 1; most confident member 1 (.7) -> 1
    [[.6, .3, .1], [.2, .5, .3], [.1, .1, .8], [.5, .3, .2]],
    [[.1, .5, .4], [.3, .3, .4], [.1, .1, .8], [.1, .7, .2]],
    [[.4, .45, .15], [.9, .05, .05], [.98, .01, .01], [.4, .1, .5]],
], np.float32)


@pytest.mark.parametrize("method, expected", [
    ("vote", [1, 0, 2, 1]),
    ("mean", [1, 0, 2, 1]),
    ("confidence", [0, 0, 0, 1]),
])
def test_rules_on_hand_made_probabilities(method, expected):
    assert decide(method, PROBS).numpy().tolist() == expected


def test_rules_break_exact_ties_towards_the_lowest_index():
    even = np.full((2, 1, 3), 1 / 3, np.float32)
    assert [decide(m, even).numpy().tolist() for m in ("vote", "mean", "confidence")] == [[0], [0], [0]]
    # Two members, one vote each, equal summed probability: the lower class wins.
    p = np.array([[[.6, .4, 0]], [[.4, .6, 0]]], np.float32)
    assert decide("vote", p).numpy().tolist() == [0]
    # Equally confident members: the first decides.
    p = np.array([[[.2, .8, 0]], [[.8, .2, 0]]], np.float32)
    assert decide("confidence", p).numpy().tolist() == [1]


def test_score_reports_members_and_rules():
    from mgr_tf.analysis.ensemble import score

    y = np.array([1, 0, 2, 1])  # members predict [0,1,2,0], [1,2,2,1], [1,0,0,2]
    members, rules = score(y, PROBS, ["vote", "mean", "confidence"], ["a", "b", "c"])
    assert [m["accuracy"] for m in members] == [0.25, 0.75, 0.5]
    assert {k: v["accuracy"] for k, v in rules.items()} == {"vote": 1.0, "mean": 1.0, "confidence": 0.5}


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="vote"):
        decide("median", PROBS)


# ------------------------------------------------------------------------------------------ refusals
def _fake_run(tmp_path, name, **changes):
    data = {"data_dir": "/data/fma", "task": "genre", "features": "mel", "beat": False, "num_genres": 10,
            "val_fraction": 0.15, "seed": 0, "n_mfcc": 20}
    data.update(changes.pop("data", {}))
    config = {"data": data, "task": data["task"], "model": {"family": "cnn"}, "features": {},
              "class_names": list(GENRES_10), **changes}
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    return str(run)


def _refusal(capsys, argv) -> str:
    from mgr_tf.ensemble import main

    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("changes, message", [
    ({"data": {"seed": 1}}, "do not share a split: data seed"),
    ({"data": {"val_fraction": 0.2}}, "do not share a split: data val_fraction"),
    ({"data": {"data_dir": "/data/other"}}, "do not share a split: data data_dir"),
    ({"class_names": ["Rock", "Jazz"]}, "different label sets"),
    ({"data": {"task": "valence"}, "class_names": []}, "ensembles combine genre (classification) runs only"),
])
def test_mismatched_runs_are_refused_in_one_line(tmp_path, capsys, changes, message):
    a = _fake_run(tmp_path, "a")
    changes = {**changes, "data": {"features": "chroma", **changes.get("data", {})}}
    b = _fake_run(tmp_path, "b", **changes)
    assert message in _refusal(capsys, [a, b, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_one_run_or_a_missing_run_is_refused(tmp_path, capsys):
    a = _fake_run(tmp_path, "a")
    assert "at least two runs" in _refusal(capsys, [a])
    assert "no config.json" in _refusal(capsys, [a, str(tmp_path / "nowhere")])


def test_export_of_mixed_beat_and_full_members_is_refused(tmp_path, capsys):
    a = _fake_run(tmp_path, "a")
    b = _fake_run(tmp_path, "b", data={"features": "fused", "beat": True})
    assert "all take full-length or all take beat-synchronous" in _refusal(
        capsys, [a, b, "--export", "ens", "--export-root", str(tmp_path / "exports")])


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def members(tiny_corpus, tmp_path_factory):
    """Three tiny CNN genre runs on mel, chroma and 13 MFCCs of the tiny corpus (not exported)."""
    from tests.conftest import TINY_CNN, run_train

    tmp = tmp_path_factory.mktemp("ensemble_members")
    return [run_train([*TINY_CNN, "--data-dir", str(tiny_corpus), "--features", features, *extra, "--epochs", "3",
                       "--lr", "3e-3"], tmp, name=features)
            for features, extra in (("mel", []), ("chroma", []), ("mfcc", ["--n-mfcc", "13"]))]


@pytest.mark.slow
def test_ensemble_reports_exports_and_serves(members, tmp_path, tiny_corpus):
    from mgr_tf.data.readers import list_split, load_spectrogram
    from mgr_tf.ensemble import main
    from mgr_tf.serving.export import read_export_config
    from mgr_tf.serving.predict import Predictor
    from mgr_tf.serving.requests import load_signature, rest_predict

    out, root = tmp_path / "ens", tmp_path / "exports"
    assert main([str(r) for r, _ in members] + ["--out", str(out), "--export", "ens", "--export-root", str(root)]) == 0
    report = json.loads((out / "ensemble_report.json").read_text())
    assert set(report["methods"]) == {"vote", "mean", "confidence"}
    for (_, member_report), entry in zip(members, report["members"]):
        # Each member scores on the ensemble's aligned split exactly what its own run reported.
        assert entry["accuracy"] == pytest.approx(member_report["metrics"]["genre"]["accuracy"])
        assert report["num_examples"] == member_report["metrics"]["genre"]["num_examples"]
    for entry in [*report["members"], *report["methods"].values()]:
        assert (out / entry["confusion_matrix_png"]).stat().st_size > 0
    assert "ensemble: vote" in (out / "ensemble_report.md").read_text()

    model_dir = root / "ens" / "1"
    assert (model_dir / "assets" / "labels.txt").read_text().split("\n")[:-1] == report["class_names"]
    assert read_export_config(model_dir)["signatures"] == ["serving_default", "serving_waveform"]
    example = list_split(tiny_corpus, "fma_genre_spectrograms", "test").examples[0]
    x = load_spectrogram(example.path).T[:256]  # (time, 140): the members were trained on 256 frames
    answer = rest_predict(load_signature(model_dir), {"signature_name": "serving_default", "instances": [x.tolist()]})
    row = answer["predictions"][0]
    assert set(row) == {"probabilities", "genre", "member_0_probabilities", "member_1_probabilities",
                        "member_2_probabilities"}
    stacked = np.array([row[f"member_{i}_probabilities"] for i in range(3)])
    np.testing.assert_allclose(row["probabilities"], stacked.mean(0), atol=1e-6)
    assert row["genre"] == report["class_names"][int(decide("vote", stacked[:, None]).numpy()[0])]

    # Each member inside the export answers what its own model answers on its own derived features.
    from mgr_tf.analysis.ensemble import load_member
    from mgr_tf.features.types import derive
    from mgr_tf.models.build import load_keras_model

    for i, (run_dir, _) in enumerate(members):
        m = load_member(run_dir)
        own = load_keras_model(run_dir).predict_on_batch(
            {"spectrogram": np.asarray(derive(m.data.features, x, m.feature_config))[None]})["genre"][0]
        np.testing.assert_allclose(stacked[i], own, atol=1e-4)

    waveform = load_signature(model_dir, "serving_waveform")
    out_w = waveform(waveform=np.random.default_rng(0).normal(0, 0.1, (1, 22050 * 3)).astype(np.float32))
    assert out_w["probabilities"].shape == (1, len(report["class_names"]))
    assert Predictor(root / "ens").predict_file(example.path)["genre"] in report["class_names"]


@pytest.mark.slow
def test_members_have_their_own_feature_types(members):
    import json

    configs = [json.loads((run_dir / "config.json").read_text()) for run_dir, _ in members]
    assert [c["data"]["features"] for c in configs] == ["mel", "chroma", "mfcc"]
    assert [c["num_bands"] for c in configs] == [128, 12, 13]
