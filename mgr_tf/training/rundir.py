"""A run folder belongs to one run: one process writes it at a time, and it resumes only the configuration it holds.

`claim(run_dir, identity)` is called before a run reads its data or trains:

- it takes the folder's lock (`RUN_DIR/.run.lock`, the operating system's, so a killed run never leaves it
  behind); a second training into the same folder is refused with one line while the first runs, instead of
  writing its epochs into the first's history;
- it compares the run's identity (its data, model, training and regression configs, and the fingerprint of the
  data's files) with the `config.json` already in the folder, if any: a rerun of the same configuration resumes
  (Keras's backup, `mgr_tf.training.resume`); another configuration is refused with one line naming what differs,
  so it neither continues the other run's weights nor overwrites its results. The data root's path is left out
  of the comparison (the fingerprint covers the root's absolute path and its files), so a relative and an
  absolute `--data-dir` for one root are the same run.

The lock is held by this process until `release` (the end of `mgr_tf.training.runner.run`) or its exit; claiming
a folder this process holds already (the baseline beside a run, cross-validation folds) does not lock again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import to_dict
from mgr_tf.core.io import LockHeld, hold_lock
from mgr_tf.data import fingerprint, resolve_root
from mgr_tf.training.plan import Plan

LOCK = ".run.lock"
CONFIG = "config.json"
IDENTITY = ("data", "model", "train", "regression", "data_fingerprint")
IGNORED = ("data.data_dir",)  # covered by the data fingerprint (the root's absolute path)
_HELD: dict[Path, IO] = {}


def identity(plan: Plan) -> dict:
    """What a run folder's config.json must match for the run to resume there (`IDENTITY`).

    The data fingerprint hashes the root's files without building anything (`mgr_tf.data.prepare.fingerprint`).
    """
    spec = plan.spec
    return {"data": to_dict(plan.data), "model": to_dict(plan.model), "train": to_dict(plan.train),
            "regression": to_dict(plan.regression), "data_fingerprint": fingerprint(resolve_root(spec), spec)}


def claim(run_dir: str | Path, run_identity: dict) -> None:
    """Locks `run_dir` for this process and checks that it holds no other run (see the module docstring).

    Args:
        run_dir: the run folder (created).
        run_identity: the run's `identity`.

    Raises:
        UserError: another process is writing the folder, or it holds another configuration's run.
    """
    folder = Path(run_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if folder not in _HELD:
        try:
            _HELD[folder] = hold_lock(folder / LOCK)
        except LockHeld as held:
            raise UserError(f"{run_dir}: another training ({held.holder}) is writing this run folder; wait for it "
                            "to finish, or pass another --out") from None
    try:
        check_config(run_dir, run_identity)
    except UserError:
        release(folder)
        raise


def release(run_dir: str | Path) -> None:
    """Releases the locks this process holds on `run_dir` and the folders inside it."""
    folder = Path(run_dir).resolve()
    for held in [p for p in _HELD if p == folder or folder in p.parents]:
        _HELD.pop(held).close()


def check_config(run_dir: str | Path, run_identity: dict) -> None:
    """Refuses a run folder whose config.json is unreadable or belongs to another configuration.

    Raises:
        UserError: naming the folder and the first differences (old -> new).
    """
    path = Path(run_dir) / CONFIG
    if not path.exists():
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise ValueError(f"expected a JSON object, got {type(stored).__name__}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a run's config ({exc}); this folder's run cannot be checked: pass another "
                        f"--out, or delete {run_dir} to start over") from None
    differences = _differences(stored, run_identity)
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise UserError(f"{run_dir} holds a run of another configuration ({shown}): a run folder resumes only its "
                        f"own run; pass another --out, or delete {run_dir} to start over")


def _differences(stored: dict, new: dict) -> list[str]:
    """"key: old -> new" for each value of `new`'s identity that the stored config has otherwise. A key the stored
    config lacks inside a section it has is a field added since (its default applies); a whole section missing is
    a difference."""
    found = []
    for section in IDENTITY:
        if section not in stored:
            found.append(f"{section}: missing -> {_short(new[section])}")
            continue
        old, value = stored[section], new[section]
        if isinstance(value, dict) and isinstance(old, dict):
            for key in value:
                name = f"{section}.{key}"
                if name not in IGNORED and key in old and _norm(old[key]) != _norm(value[key]):
                    found.append(f"{name}: {_short(old[key])} -> {_short(value[key])}")
        elif _norm(old) != _norm(value):
            found.append(f"{section}: {_short(old)} -> {_short(value)}")
    return found


def _norm(value):
    """A value as JSON gives it back (tuples are lists), so a stored value compares equal to a new one."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
