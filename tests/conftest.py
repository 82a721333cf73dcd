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
    from mgr_tf.synth import generate_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    generate_corpus(root, seed=0, clips=60, duration=6.0, progress=False)
    return root
