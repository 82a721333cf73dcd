"""`Task`: the interface every task implements (see `mgr_tf.tasks`)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


class Task:
    """What one prediction task is: outputs, labels, heads, losses, metrics, reports, serving.

    Subclasses set the class attributes and implement the methods that raise NotImplementedError.

    Attributes:
        name: the `--task` value.
        outputs: output names of the model (= the target keys of the data).
        label_kind: which labelled sub-datasets feed it: "genre" (genre label files) or "emotion"
            (the multitask CSV of valence, energy, danceability).
        monitor: (validation quantity, mode) for early stopping, checkpoints and the learning-rate schedule.
        classification: True when the outputs are class probabilities (uses class names).
        transfer_source: a trained model of this task may initialise another task's model (`--init-from`).
    """

    name: str = ""
    outputs: tuple[str, ...] = ()
    label_kind: str = ""
    monitor: tuple[str, str] = ("val_loss", "min")
    classification: bool = False
    transfer_source: bool = False

    # ----------------------------------------------------------------------------------------- data
    def class_index(self, columns: Mapping, label_map: np.ndarray | None) -> np.ndarray:
        """Per example of a split index: its class (-1 = excluded), or 0 where there are no classes.

        Args:
            columns: the split's label columns (track_id, labelled, and the label kind's columns).
            label_map: raw label index -> class index (-1 = dropped), for classification tasks.
        """
        return np.zeros(len(columns["track_id"]), np.int64)

    def strata(self, columns: Mapping, label_map: np.ndarray | None) -> np.ndarray:
        """Per example, the stratum of the stratified validation split (and cross-validation folds)."""
        raise NotImplementedError

    def targets(self, example: Mapping, label_map):
        """The target dict of one TFDS example, in graph (`label_map` is an int32 tensor or None)."""
        raise NotImplementedError

    def target_shapes(self) -> dict[str, list[int]]:
        """Per output, the per-example target shape (for padded batching)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- model
    def heads(self, features, config, *, num_classes: int = 0, class_names: Sequence[str] | None = None) -> dict:
        """Output layers on the backbone's (batch, features) tensor, keyed by output name."""
        raise NotImplementedError

    def check_train_config(self, train) -> str | None:
        """A one-line problem with the training flags for this task, or None."""
        if train.learned_weights:
            return "--learned-weights needs --task multitask"
        if train.init_from and self.transfer_source:
            return (f"--init-from transfers a {self.name} model to another task; it cannot be used with "
                    f"--task {self.name}")
        return None

    def losses(self, train) -> dict:
        """{output name: loss} for `compile`, given a TrainConfig."""
        raise NotImplementedError

    def compile(self, model, train, learning_rate: float):
        """Compiles `model` for this task and returns the model to fit (it may wrap `model`)."""
        raise NotImplementedError

    def callbacks(self, fit_model) -> list:
        """Callbacks that add derived values to the logs before the others read them."""
        return []

    # ----------------------------------------------------------------------------------------- results
    def serving_outputs(self, outputs: Mapping, class_names: Sequence[str]) -> dict:
        """The named outputs of the serving signatures, from the model's output dict (in graph)."""
        raise NotImplementedError

    def evaluate(self, y_true: Mapping, predictions: Mapping, *, class_names: Sequence[str],
                 run_dir: Path | None = None, title: str = "") -> dict:
        """Report metrics ({output: {...}}) from the true values and predictions; plots into run_dir."""
        raise NotImplementedError

    def headline(self, metrics: Mapping) -> dict[str, float]:
        """The few numbers a table of runs shows (e.g. accuracy and macro-F1)."""
        raise NotImplementedError

    def summary_line(self, metrics: Mapping) -> str:
        """One readable line of the headline numbers."""
        return ", ".join(f"{k} {v:.3f}" for k, v in self.headline(metrics).items())

    def markdown(self, metrics: Mapping) -> list[str]:
        """report.md lines for the metrics."""
        raise NotImplementedError

    def summarise_predictions(self, outputs: Sequence[Mapping], class_names: Sequence[str]) -> dict:
        """One prediction from serving outputs of several windows of a file (averaged)."""
        raise NotImplementedError
