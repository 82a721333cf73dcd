"""`python -m mgr_tf.reproduce --quick`: every topic runs, one table, resumable."""

from __future__ import annotations

import json

import pytest

from mgr_tf.analysis.reproduce import ENSEMBLE_MEMBERS, TOPICS, missing_data


def test_topics_name_registered_tasks_and_their_data(tmp_path):
    from mgr_tf.tasks import TASKS

    assert all(t.flags[t.flags.index("--task") + 1] in TASKS for t in TOPICS)
    assert set(ENSEMBLE_MEMBERS) <= {t.name for t in TOPICS}
    (tmp_path / "fma_genre_spectrograms").mkdir()
    assert missing_data(TOPICS[0], str(tmp_path)) == ""
    valence = next(t for t in TOPICS if t.name == "valence")
    assert missing_data(valence, str(tmp_path)) == "the root has no multitask_dataset/"


@pytest.mark.slow
def test_quick_reproduction_writes_one_table_and_resumes(tiny_corpus, tmp_path, capsys):
    from mgr_tf.reproduce import main

    out = tmp_path / "reproduce"
    assert main(["--quick", "--data-dir", str(tiny_corpus), "--out", str(out)]) == 0
    result = json.loads((out / "reproduce.json").read_text())
    assert [r["name"] for r in result["rows"][:len(TOPICS)]] == [t.name for t in TOPICS]
    assert len(result["rows"]) == len(TOPICS) + 3 and all(r["value"] is not None for r in result["rows"])
    genre = json.loads((out / "genre_cnn" / "report.json").read_text())
    assert result["rows"][0]["value"] == genre["metrics"]["genre"]["accuracy"]
    table = (out / "reproduce.md").read_text()
    assert "0.35 (report 1" in table and "(vote)" in table and "not results" in table
    capsys.readouterr()
    assert main(["--quick", "--data-dir", str(tiny_corpus), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("finished earlier, kept") == len(TOPICS)
