"""Where mgr_tf keeps generated and cached files."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_EXPORT_ROOT = "exported_models"  # where exports go unless a command says otherwise


def cache_home() -> Path:
    """Root of mgr_tf's caches: $MGR_TF_HOME, else ~/.cache/mgr_tf."""
    return Path(os.environ.get("MGR_TF_HOME") or Path.home() / ".cache" / "mgr_tf")


def default_corpus_dir(seed: int = 0) -> Path:
    """Folder of the embedded default corpus generated for `seed`.

    v2: the test split is drawn by `mgr_tf.data.splits` (v1 used a hash of the id); v2 also records
    features.json.
    """
    return cache_home() / f"corpus-v2-seed{seed}"
