"""Shared fixtures: an isolated cache home and small synthetic corpora made by `mgr_tf.synth`."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_home(tmp_path_factory):
    """Keeps tests away from the user's ~/.cache/mgr_tf."""
    home = tmp_path_factory.mktemp("mgr_tf_home")
    old = os.environ.get("MGR_TF_HOME")
    os.environ["MGR_TF_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MGR_TF_HOME", None)
    else:
        os.environ["MGR_TF_HOME"] = old


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """All four sub-datasets, 3 clips per genre, 6 s clips: fast, real formats, short arrays."""
    from mgr_tf.data.synth.corpus import generate_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    generate_corpus(root, seed=0, clips=60, duration=6.0, progress=False)
    return root


# Fused, whole-clip inputs (not the real-data defaults mfcc + 256-frame patches, which tests of their own cover).
WHOLE_FUSED = ["--features", "fused", "--patch-frames", "0"]
TINY_CNN = [*WHOLE_FUSED, "--model", "cnn", "--cnn-channels", "4", "8", "8", "8", "--max-frames", "256", "--batch-size", "16"]
TINY_LSTM = [*WHOLE_FUSED, "--model", "lstm", "--lstm-units", "8", "--lstm-frame-stride", "4", "--batch-size", "16"]


def run_train(args, tmp_path, name="run", export=None, baseline=False):
    """Runs `python -m mgr_tf.train` in-process; returns (run_dir, report).

    The summary baseline beside the run is skipped unless `baseline` (it has its own tests).
    """
    import json

    from mgr_tf.train import main

    run_dir = tmp_path / name
    argv = [*args, "--out", str(run_dir), "--export", export or "none", "--export-root", str(tmp_path / "exports"),
            *([] if baseline else ["--no-baseline"])]
    assert main(argv) == 0
    return run_dir, json.loads((run_dir / "report.json").read_text())


def export_dir(run):
    """The export folder of a `run_train(..., export=NAME)` result."""
    from pathlib import Path

    return Path(run[1]["export_dir"])


@pytest.fixture(scope="session")
def genre_run(tiny_corpus, tmp_path_factory):
    """A tiny CNN genre model trained for 2 epochs on the tiny corpus and exported (name 'genre'), with
    the summary baseline trained beside it; served alone (`--blend off`: the blend has its own tests, in
    test_blend)."""
    tmp = tmp_path_factory.mktemp("genre_run")
    run_dir, report = run_train(["--task", "genre", "--data-dir", str(tiny_corpus), "--epochs", "2", *TINY_CNN,
                                 "--blend", "off"], tmp, export="genre", baseline=True)
    return run_dir, report


@pytest.fixture(scope="session")
def multitask_run(tiny_corpus, tmp_path_factory):
    """A tiny LSTM multitask model with learned weights, trained 2 epochs on beat-synced data, exported."""
    tmp = tmp_path_factory.mktemp("multitask_run")
    run_dir, report = run_train(["--task", "multitask", "--beat", "--learned-weights", "--data-dir", str(tiny_corpus),
                                 "--epochs", "2", *TINY_LSTM], tmp, export="multitask")
    return run_dir, report


# Session fixtures that train models, or run a subprocess (`pip download` of the musicnn wheel): every test using
# one belongs to the slow tier.
SLOW_FIXTURES = {"genre_run", "multitask_run", "tune_run", "resumed_run", "members", "musicnn_wheel", "musicnn_run"}


def pytest_collection_modifyitems(config, items):
    """Drops `test_session` (a helper that tf.test.TestCase, under TFDS's builder test case, names like a test) and
    marks every test that uses a training or subprocess fixture as slow, so `-m "not slow"` runs neither."""
    items[:] = [item for item in items if item.name != "test_session"]
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
