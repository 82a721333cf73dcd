"""The phase backup (`mgr_tf.training.resume.BackupAndRestoreBest`) is written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_a_backup_killed_mid_write_leaves_the_previous_one_whole_and_resumable(tmp_path, monkeypatch):
    import keras

    from mgr_tf.training.resume import BackupAndRestoreBest

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    folder = tmp_path / "backup"
    backup = BackupAndRestoreBest(str(folder), [], double_checkpoint=True)
    backup.set_model(model)
    backup._current_epoch = 1
    backup._save_model()
    weights = folder / "latest.weights.h5"
    first = weights.read_bytes()
    saved = [w.copy() for w in model.get_weights()]

    def killed(self, filepath, overwrite=True):  # the process dies half-way through writing the weights
        with open(filepath, "wb") as handle:
            handle.write(first[: len(first) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save_weights", killed)
    model.set_weights([w + 1 for w in saved])
    backup._current_epoch = 2
    with pytest.raises(KeyboardInterrupt):
        backup._save_model()
    monkeypatch.undo()
    assert weights.read_bytes() == first  # the last whole backup, untouched
    assert json.loads((folder / "training_metadata.json").read_text())["epoch"] == 1

    resumed = BackupAndRestoreBest(str(folder), [], double_checkpoint=True)
    resumed.set_model(model)
    resumed.on_train_begin()
    for got, want in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(got, want)
    backup._current_epoch = 3
    backup._save_model()  # the next write removes the half-written file of the killed one
    assert not list(folder.glob(".*.part.weights.h5"))
