"""`python -m mgr_tf.explore`: every figure of a dataset root and of a trained CNN run is written and non-empty."""

from __future__ import annotations

import json
import re

import pytest

from mgr_tf.analysis.figures import slug
from mgr_tf.core.cli import run_cli
from mgr_tf.core.published import GENRES_10
from mgr_tf.explore import main


def _figures(out) -> list[str]:
    """The PNGs index.md links, checked to exist and be non-empty."""
    index = (out / "index.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", index)
    for name in linked:
        assert (out / name).stat().st_size > 1000, name
    assert sorted(linked) == sorted(p.name for p in out.glob("*.png"))
    return linked


def test_explore_data_root_writes_every_figure(tiny_corpus, tmp_path):
    out = tmp_path / "explore"
    assert main([str(tiny_corpus), "--out", str(out)]) == 0
    expected = {"class_counts.png", "beat_lengths.png", "emotion_histograms.png", "emotion_correlations.png",
                *(f"spectrograms_{slug(g)}.png" for g in GENRES_10)}
    assert set(_figures(out)) == expected
    index = (out / "index.md").read_text()
    assert "| Rock |" in index and "Indie-Rock" in index  # the counts table and the dropped genres


def test_explore_refuses_bad_paths_in_one_line(tmp_path, capsys):
    assert run_cli(main, [str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
    (tmp_path / "empty").mkdir()
    assert run_cli(main, [str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no genre or emotion sub-dataset" in capsys.readouterr().err


def test_explore_run_refuses_emotion_runs(tmp_path, capsys):
    run = tmp_path / "valence_run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"task": "valence"}, "class_names": []}))
    (run / "model.keras").write_bytes(b"not used")
    assert run_cli(main, [str(run)]) == 2
    assert "explore draws genre runs" in capsys.readouterr().err


@pytest.mark.slow
def test_explore_cnn_run_writes_activations_and_pca(genre_run, tmp_path):
    run_dir, report = genre_run
    out = tmp_path / "explore_run"
    assert main([str(run_dir), "--out", str(out)]) == 0
    figures = set(_figures(out))
    assert "embedding_pca.png" in figures
    present = [name for name, row in report["metrics"]["genre"]["per_class"].items() if row["support"] > 0]
    assert {f"activations_{slug(g)}.png" for g in present} <= figures
