"""A converted pretrained tagger (musicnn) as a TF Serving SavedModel, and its tags for audio files.

The converted model takes patches (batch, frames, bands) and answers ``tags`` and ``embedding``; the family's
`mgr_tf.models.Tagger` says how audio becomes patches (its front end, in graph ops) and names the tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.core.parallel import default_workers
from mgr_tf.data.inputs import Piece, Reading
from mgr_tf.features.decode import SILENCE_DB
from mgr_tf.models import BACKBONES, Tagger
from mgr_tf.models.build import at_precision
from mgr_tf.serving.batch import predict_inputs
from mgr_tf.serving.export import read_export_config, resolve_model_dir, write_version
from mgr_tf.serving.guards import checked_spectrogram, checked_waveform

TAGS = "tags"
EMBEDDING = "embedding"
BATCH_SIZE = 32  # patches per call of `TagPredictor`'s network (a musicnn patch takes ~25 MB of activations)


def export_tagger(keras_model, out_dir: str | Path, tagger: Tagger, *, family: str,
                  tags: Sequence[str] | None = None) -> Path:
    """Writes a TF Serving SavedModel of a converted tagger as `out_dir/<next version>/` (atomic rename).

    Signatures:
        serving_default: ``patch`` float32 (batch, frames, bands) -> ``tags`` (batch, tags), ``embedding``.
        serving_waveform: ``waveform`` float32 (batch, samples), mono at the tagger's rate (musicnn: 16 kHz, at
            least one 3 s patch) -> ``tags`` and ``embedding``, each averaged over the clip's patches.
    ``assets/labels.txt`` lists the tag names, one a line, in output order.

    Args:
        keras_model: the converted model.
        out_dir: the model folder (TF Serving's model base path).
        tagger: the family's `Tagger`.
        family: the family's name (recorded as the export's kind, e.g. "musicnn_tagger").
        tags: tag names (default: the tagger's names for the model).
    """
    names = list(tags) if tags is not None else list(tagger.tags_of(keras_model))
    frames, bands = tagger.patch_shape

    def write(tmp: Path) -> None:
        archive = keras.export.ExportArchive()
        archive.track(keras_model)

        def serve_patches(patch):
            out = keras_model(checked_spectrogram(patch, "patch"), training=False)
            return {TAGS: out[TAGS], EMBEDDING: out[EMBEDDING]}

        def serve_waveform(waveform):
            patches = tagger.frontend(checked_waveform(waveform, tagger.sample_rate))  # (batch, P, frames, bands)
            shape = tf.shape(patches)
            out = keras_model(tf.reshape(patches, [-1, frames, bands]), training=False)
            return {k: tf.reduce_mean(tf.reshape(out[k], tf.concat([shape[:2], [-1]], 0)), axis=1)
                    for k in (TAGS, EMBEDDING)}

        archive.add_endpoint("serving_default", serve_patches,
                             input_signature=[tf.TensorSpec([None, frames, bands], tf.float32, name="patch")])
        archive.add_endpoint("serving_waveform", serve_waveform,
                             input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
        archive.write_out(str(tmp), verbose=False)

    config = {"kind": f"{family}_tagger", "model": keras_model.name, "tags": names,
              "sample_rate": tagger.sample_rate, "signatures": ["serving_default", "serving_waveform"],
              "weights": tagger.weights}
    return write_version(Path(out_dir), write, labels=names, config=config)


def family_tagger(model=None, kind: str | None = None) -> tuple[str, Tagger]:
    """(family, `Tagger`) of a converted model (found by its tag names) or of a tagger export's kind.

    Raises:
        UserError: no registered family converts such a model.
    """
    for name, backbone in BACKBONES.items():
        converter = backbone.encoder.converter if backbone.encoder else None
        if converter is None or (kind is not None and kind != f"{name}_tagger"):
            continue
        tagger = converter.tagger()
        if model is None:
            return name, tagger
        try:
            tagger.tags_of(model)
        except ValueError:
            continue
        return name, tagger
    what = f"model {model.name!r}" if model is not None else f"export kind {kind!r}"
    raise UserError(f"{what} is not a converted tagger of a registered family (python -m mgr_tf.pretrained)")


class TagPredictor:
    """Tags of audio files from a converted `.keras` tagger or its TF Serving export (`predict --tags`).

    The model side of `mgr_tf.serving.batch.predict_inputs`: each file is decoded whole at the tagger's rate, cut
    into patches by the tagger's front end, its patches batched with other files' through the network, and its
    tags averaged over its patches.

    Args:
        path: the converter's `.keras` file, or an export's model or version folder.
        precision: the network's compute precision (`mgr_tf.core.config.PRECISIONS`); an export keeps the
            precision it was exported with, so only float32 applies to it.
        batch_size: patches per call of the network.
        min_seconds: recordings shorter than this are refused (None = any length: the front end repeat-pads).
        silence_db: recordings whose peak is at or below this level (dBFS) are refused.
    """

    def __init__(self, path: str | Path, *, precision: str = "float32", batch_size: int = BATCH_SIZE,
                 min_seconds: float | None = None, silence_db: float = SILENCE_DB):
        path = Path(path)
        self.batch_size = batch_size
        self.prefetch = 2  # whole recordings decoded ahead of the network
        # The network takes ~20x the decoding's time and both cores' threads: a decoding process beside it slows
        # it more than it saves (0.52x against 0.79x of the encoder alone on 2 cores, docs/results.md), so decoding
        # stays in this process unless cores are left over.
        self.workers = max(1, default_workers() - 2)
        if path.suffix == ".keras":
            if not path.is_file():
                raise UserError(f"{path}: no such model file")
            model = keras.saving.load_model(path, compile=False)
            _, self.tagger = family_tagger(model)
            self.names = list(self.tagger.tags_of(model))
            model = at_precision(model, precision)
            frames, bands = self.tagger.patch_shape
            call = tf.function(lambda patch: model(patch, training=False),
                               input_signature=[tf.TensorSpec([None, frames, bands], tf.float32)])
        else:
            model_dir = resolve_model_dir(path)
            labels = model_dir / "assets" / "labels.txt"
            config = read_export_config(model_dir)
            loaded = tf.saved_model.load(str(model_dir))
            if "serving_waveform" not in loaded.signatures or not labels.is_file() or "kind" not in config:
                raise UserError(f"{model_dir}: not a tagger export (python -m mgr_tf.pretrained ... --export)")
            if precision != "float32":
                raise UserError(f"{model_dir}: an export computes in the precision it was exported with; "
                                f"--precision {precision} needs the converted .keras file")
            _, self.tagger = family_tagger(kind=config["kind"])
            self.names = labels.read_text().split("\n")[:-1]
            signature = loaded.signatures["serving_default"]
            call = lambda patch: signature(patch=patch)  # noqa: E731
        self._call = call
        self.reading = Reading(self.tagger.sample_rate, window_seconds=None, min_seconds=min_seconds,
                               silence_db=silence_db, short_hint="use a lower --min-seconds")

    # ------------------------------------------------------------------ the batch engine's side
    def examples(self, piece: Piece, path: str) -> tuple[str, np.ndarray]:
        """("patch", (patches, frames, bands)) of one decoded recording."""
        if piece.spectrogram:
            raise UserError(f"{path}: --tags takes audio files")
        return "patch", np.asarray(self.tagger.frontend(np.asarray(piece.data, np.float32)))

    def run(self, signature: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """``tags`` and ``embedding`` of a batch of patches."""
        outputs = self._call(tf.constant(batch))
        return {name: np.asarray(outputs[name]) for name in (TAGS, EMBEDDING)}

    def combine(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A recording's outputs: its patches' averaged."""
        return {name: value.mean(axis=0) for name, value in outputs.items()}

    def score_columns(self) -> list[str]:
        """The score columns of a row: one probability per tag."""
        return list(self.names)

    def scores(self, outputs: list[dict]) -> dict:
        """Tag probabilities of a recording, keyed by tag name."""
        return dict(zip(self.names, (float(p) for p in self.probabilities(outputs))))

    @staticmethod
    def probabilities(outputs: list[dict]) -> np.ndarray:
        """The tag probabilities of a recording's outputs."""
        return np.mean([o[TAGS] for o in outputs], axis=0) if len(outputs) > 1 else outputs[0][TAGS]

    def tags(self, audio_path: str | Path) -> np.ndarray:
        """Tag probabilities of one audio file (read at the tagger's rate), averaged over its patches.

        Raises:
            ValueError: the file is missing, empty, undecodable or refused.
        """
        [result] = predict_inputs(self, [str(audio_path)], workers=1)
        if result.problem is not None:
            raise ValueError(result.problem)
        return self.probabilities(result.outputs)
