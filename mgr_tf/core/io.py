"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | Path, data: Any) -> None:
    """Writes `data` as indented JSON, atomically (creating parent folders).

    The text goes to a temporary file beside `path` that is then renamed over it, so a concurrent
    reader (another process preparing the same records, a resumed run) never sees half a file.
    """
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Writes `text` to `path` atomically (a temporary file beside it, then one rename), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
