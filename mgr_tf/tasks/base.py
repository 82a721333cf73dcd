"""`Task`: what one prediction task predicts (see `mgr_tf.tasks`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


class Task:
    """What a model predicts: its targets (as decoded from the data), heads, losses, metrics, monitor and
    serving outputs.

    How a model is compiled and fitted lives in `mgr_tf.training`, how its results are scored and shown in
    `mgr_tf.training.report`. Subclasses set the class attributes and implement the methods that raise
    NotImplementedError; they use TensorFlow only inside their methods, so the registry imports without it.

    Attributes:
        name: the `--task` value.
        outputs: output names of the model (= the target keys of the data).
        label_kind: which labelled sub-datasets feed it: "genre" (genre label files) or "emotion"
            (the multitask CSV of regression targets).
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

    # ----------------------------------------------------------------------------------------- targets
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

    def losses(self, regression) -> dict:
        """{output name: loss} for `compile`, given a `mgr_tf.core.config.RegressionConfig`."""
        raise NotImplementedError

    def loss_weights(self, regression) -> dict[str, float] | None:
        """Fixed weights of the outputs' losses (None = one output, or all equal)."""
        return None

    def metrics(self) -> dict:
        """{output name: [metrics]} for `compile`."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- serving
    def serving_outputs(self, outputs: Mapping, class_names: Sequence[str]) -> dict:
        """The named outputs of the serving signatures, from the model's output dict (in graph)."""
        raise NotImplementedError
