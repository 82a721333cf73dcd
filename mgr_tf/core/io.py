"""Writing files so that a reader never sees half of one, and locks so that two writers take turns."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Iterator


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


@contextlib.contextmanager
def locked(path: str | Path, what: str) -> Iterator[None]:
    """Holds an exclusive lock on `path` (created) for the block; another holder makes this one wait, saying so.

    The lock is the operating system's (`flock`), so it is released when its process dies, however it dies:
    a killed run never leaves a stale lock behind.

    Args:
        path: the lock file (e.g. `ROOT/.ingest.lock`).
        what: what the lock protects, for the waiting message (e.g. "the dataset root ROOT").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            print(f"mgr_tf: waiting for {holder} to finish with {what}", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LockHeld(RuntimeError):
    """Another process holds the lock (`hold_lock`); `holder` says which ("pid 123")."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path}: held by {holder}")
        self.holder = holder


def hold_lock(path: str | Path) -> IO:
    """Takes an exclusive lock on `path` (created) without waiting and returns the open file that holds it: the lock
    lasts until that file is closed or the process ends, however it ends.

    Raises:
        LockHeld: another process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LockHeld(path, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle
