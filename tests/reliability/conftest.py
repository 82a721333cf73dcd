"""The reliability suite (issue 19): hostile inputs, faults and concurrency, against the real commands.

Each test says what it observed before asserting, as one outcome class of the issue's table:

- ``clear``: a refusal in one line naming the file (or flag) and the problem;
- ``unclear``: a refusal that names no file, or misleads;
- ``traceback``: an exception that is not a one-line error;
- ``silent``: a wrong result without a word (garbage answered, stale records, a run continued);
- ``lost``: data lost or corrupted;
- ``security``: a file read from outside the data root, or a decompression bomb accepted;
- ``ok``: the right result (where no refusal is due).

With ``MGR_TF_OUTCOMES=FILE`` set, the observed outcomes are written to FILE as JSON at the end of the session
(`tests/reliability/table.py FILE` counts them in the issue's form); the suite runs unchanged against an older
checkout, so the same tests give the before and the after tables.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

KINDS = ("clear", "unclear", "traceback", "silent", "lost", "security", "ok")
REPO = Path(__file__).resolve().parents[2]
_OUTCOMES = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[_OUTCOMES] = []


def pytest_sessionfinish(session):
    path = os.environ.get("MGR_TF_OUTCOMES")
    if path and _OUTCOMES in session.config.stash:
        Path(path).write_text(json.dumps(session.config.stash[_OUTCOMES], indent=1))


@pytest.fixture
def outcome(request):
    """`outcome(case, kind)` records what the test observed for a case of the issue ("1".."10", or "own")."""

    def record(case: str, kind: str) -> str:
        assert kind in KINDS, kind
        request.config.stash[_OUTCOMES].append({"case": case, "test": request.node.nodeid, "kind": kind})
        return kind

    return record


@dataclass
class Ran:
    """What a command did: its exit status, its output, and the exception that escaped it (a traceback)."""

    code: int | None
    out: str
    err: str
    exc: BaseException | None = None

    def kind(self, *names) -> str:
        """The outcome class of a run that should have refused its input, naming one of `names`."""
        if self.exc is not None or "Traceback (most recent call last)" in self.err:
            return "traceback"
        if self.code == 0:
            return "silent"
        errors = [line for line in self.err.splitlines() if line.startswith("error:") or ": error: " in line]
        named = all(any(str(n) in line for line in errors) for n in names)
        return "clear" if len(errors) == 1 and named else "unclear"


def run_main(main, argv) -> Ran:
    """Runs a command's `main(argv)` in this process as `run_cli` does, capturing its output."""
    from mgr_tf.core.cli import run_cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run_cli(main, [str(a) for a in argv])
        except SystemExit as exit:  # argparse
            code = exit.code
        except Exception as exc:  # what a user would see as a traceback
            return Ran(None, out.getvalue(), err.getvalue(), exc)
    return Ran(code, out.getvalue(), err.getvalue())


def command(*args, cwd=None, env=None, timeout=600) -> Ran:
    """Runs `python -m mgr_tf.<args>` in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=subprocess_env(env), timeout=timeout)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def subprocess_env(extra=None) -> dict:
    """The environment of a child process: this checkout first on the path, this session's cache home."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}
    return {**env, **(extra or {})}


def copy_root(src: Path, dst: Path) -> Path:
    """A copy of a dataset root (each test edits its own)."""
    shutil.copytree(src, dst)
    return dst


def label_rows(path: Path) -> list[str]:
    """The data lines of a label file (its header left out)."""
    return [line for line in path.read_text().splitlines()[1:] if line.strip()]
