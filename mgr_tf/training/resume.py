"""Resuming a killed phase where it stopped, best-so-far state included.

Keras's `BackupAndRestore` restores the weights, the optimizer (its learning rate too) and the epoch, but not the
state of the other callbacks: after a resume, early stopping and the best checkpoint start from "no best yet",
so the epochs before the kill no longer count, and a run killed once keeps the best epoch after the resume instead
of the best one of the run. `BackupAndRestoreBest` backs up with each epoch's backup the state of early stopping
(its best value and epoch, the epochs waited, the best weights), the learning-rate schedule (its best value, wait
and cooldown) and the best checkpoint (its best value), and restores it after Keras restores the rest.

Each epoch's state is its own file (`callbacks-<epoch>.json`, the best weights in `best-<epoch>.npz`), written
atomically before the epoch's backup, and the state of the previous epoch is kept: whichever backup Keras restores
(its latest, or the previous one when a kill corrupted the latest), the state of that epoch is there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from mgr_tf.core.io import write_json

# The attributes of each kind of callback that carry its best-so-far state.
_STATE = {
    keras.callbacks.EarlyStopping: ("best", "best_epoch", "wait", "stopped_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("best", "wait", "cooldown_counter"),
    keras.callbacks.ModelCheckpoint: ("best",),
}


class BackupAndRestoreBest(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that also backs up and restores the state of the phase's other callbacks.

    It must come after those callbacks in the list: Keras calls them in order, so at the end of an epoch they
    have taken the epoch into account before it backs up, and at the start of training it restores their state
    after they have reset it.

    Args:
        backup_dir: the backup folder of the phase.
        tracked: the callbacks whose state is kept (early stopping, learning-rate schedule, checkpoint).
        **kwargs: passed to `BackupAndRestore` (e.g. double_checkpoint).
    """

    def __init__(self, backup_dir: str, tracked, **kwargs):
        super().__init__(backup_dir=backup_dir, **kwargs)
        self.tracked = [cb for cb in tracked if _kind(cb) is not None]
        self.restored_epoch: int | None = None  # the epoch whose state was restored (None: a fresh start)

    def _save_model(self):
        epoch = self._current_epoch
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        state = {"epoch": epoch, "callbacks": [self._state_of(cb, folder, epoch) for cb in self.tracked]}
        write_json(folder / f"callbacks-{epoch}.json", state)
        self._save_backup(folder)
        self._prune(folder, keep=(epoch, epoch - 1))

    def _save_backup(self, folder: Path) -> None:
        """Keras's backup of the weights and the epoch, each written atomically (a temporary file, then one
        rename): a kill mid-write leaves the previous backup whole. Keras writes the weights in place, so a kill
        during the first epoch's backup (no previous one to fall back on) left a file no resume could open."""
        if self.double_checkpoint and os.path.exists(self._weights_path):
            _copy_atomically(self._weights_path, self._prev_weights_path)
        if self.double_checkpoint and os.path.exists(self._training_metadata_path):
            _copy_atomically(self._training_metadata_path, self._prev_training_metadata_path)
        for stale in folder.glob(".*.part.weights.h5"):  # of a killed earlier write (one trainer per run folder)
            stale.unlink(missing_ok=True)
        tmp = folder / f".{os.getpid()}.part.weights.h5"
        self.model.save_weights(filepath=str(tmp), overwrite=True)
        os.replace(tmp, self._weights_path)
        write_json(Path(self._training_metadata_path), {"epoch": self._current_epoch, "batch": self._last_batch_seen})

    def _load_model(self):
        super()._load_model()
        metadata = Path(self._training_metadata_path)
        if not metadata.is_file():
            return
        epoch = int(json.loads(metadata.read_text())["epoch"])
        path = Path(self.backup_dir) / f"callbacks-{epoch}.json"
        if not path.is_file():
            print(f"[train] no saved state of early stopping and checkpoints for epoch {epoch} in {self.backup_dir}:"
                  " they start afresh", flush=True)
            return
        state = json.loads(path.read_text())
        for cb, saved in zip(self.tracked, state["callbacks"]):
            for name, value in saved["values"].items():
                setattr(cb, name, value)
            if saved.get("best_weights"):
                with np.load(Path(self.backup_dir) / saved["best_weights"], allow_pickle=False) as arrays:
                    cb.best_weights = [arrays[f"w{i}"] for i in range(len(arrays.files))]
        self.restored_epoch = epoch

    def _state_of(self, cb, folder: Path, epoch: int) -> dict:
        values = {name: _plain(getattr(cb, name, None)) for name in _STATE[_kind(cb)]}
        state = {"kind": type(cb).__name__, "values": values}
        weights = getattr(cb, "best_weights", None)
        if weights is not None:
            name = f"best-{epoch}.npz"
            if getattr(cb, "best_epoch", None) != epoch - 1 and self._previous_best(folder, epoch):
                name = self._previous_best(folder, epoch)  # unchanged since the last epoch: no new copy
            else:
                _save_arrays(folder / name, weights)
            state["best_weights"] = name
        return state

    def _previous_best(self, folder: Path, epoch: int) -> str | None:
        """The best-weights file the previous epoch's state names, if it still exists."""
        path = folder / f"callbacks-{epoch - 1}.json"
        if not path.is_file():
            return None
        for saved in json.loads(path.read_text())["callbacks"]:
            name = saved.get("best_weights")
            if name and (folder / name).is_file():
                return name
        return None

    @staticmethod
    def _prune(folder: Path, keep: tuple[int, ...]) -> None:
        """Removes the states of older epochs and the best weights no kept state names."""
        named = set()
        for path in folder.glob("callbacks-*.json"):
            if int(path.stem.split("-")[1]) not in keep:
                path.unlink(missing_ok=True)
                continue
            named.update(s.get("best_weights") for s in json.loads(path.read_text())["callbacks"])
        for path in folder.glob("best-*.npz"):
            if path.name not in named:
                path.unlink(missing_ok=True)


def _kind(cb):
    return next((kind for kind in _STATE if isinstance(cb, kind)), None)


def _plain(value):
    """A JSON value of a callback attribute (NumPy and TensorFlow scalars become Python numbers)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return float(np.asarray(value))


def _copy_atomically(source: str, target: str) -> None:
    tmp = f"{target}.{os.getpid()}.part"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _save_arrays(path: Path, arrays) -> None:
    """Writes `arrays` to an .npz file atomically (a temporary file, then one rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(tmp, "wb") as handle:
        np.savez(handle, **{f"w{i}": np.asarray(a) for i, a in enumerate(arrays)})
    tmp.replace(path)
