"""Where mgr_tf keeps generated and cached files."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_EXPORT_ROOT = "exported_models"  # where exports go unless a command says otherwise
# An export name is a folder under the export root and TF Serving's model name (a URL path segment): letters,
# digits, "_", "-" and "." (not first), short enough for every file system with the version folder below it.
EXPORT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_EXPORT_NAME = 100


def check_export_name(name: str) -> str:
    """`name` if it can name an export, else ValueError saying why (checked before any work, not at the export).

    Args:
        name: the model name (`train --export NAME`, `export --name NAME`).
    """
    if not name or len(name) > MAX_EXPORT_NAME or not EXPORT_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else f"{name[:40]}... ({len(name)} characters)"
        raise ValueError(f"bad export name {shown!r}: use letters, digits, '_', '-' and '.' (not first), at most "
                         f"{MAX_EXPORT_NAME} characters (it names a folder and TF Serving's model)")
    return name


def cache_home() -> Path:
    """Root of mgr_tf's caches: $MGR_TF_HOME, else ~/.cache/mgr_tf."""
    return Path(os.environ.get("MGR_TF_HOME") or Path.home() / ".cache" / "mgr_tf")


def default_corpus_dir(seed: int = 0) -> Path:
    """Folder of the embedded default corpus generated for `seed`.

    v2: the test split is drawn by `mgr_tf.data.splits` (v1 used a hash of the id); v2 also records
    features.json.
    """
    return cache_home() / f"corpus-v2-seed{seed}"
