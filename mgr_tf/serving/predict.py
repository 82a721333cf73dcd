"""Predictions from an exported model (`python -m mgr_tf.predict MODEL_DIR INPUT...`).

INPUT is a spectrogram (`.npy` / `.npy.gz`, stored (bands, time) or (time, bands); a 140-band fused array
also feeds a mel- or chroma-only model) or an audio file (wav, mp3, ogg, flac, ...). Audio longer than one
clip is cut into clip-length windows whose predictions are averaged; `--json` lists each window too.
Models exported with the `serving_waveform` signature compute features in the graph; the others
(beat-synchronous models) get features computed in Python with the same `FeatureConfig`.

A `Predictor` is the model side of `mgr_tf.serving.batch.predict_inputs` (many files, windows batched across
them); `predict_file` is that path for one file. Recordings shorter than ingest keeps (the clip less 1 s, by
default) or silent ones are refused, as `python -m mgr_tf.ingest` refuses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DEFAULT_FRAME_CAP, DEFAULT_SIZE_CAP_MB, FUSED_BANDS, FeatureConfig, from_dict
from mgr_tf.core.parallel import default_workers
from mgr_tf.data.inputs import SPECTROGRAM_SUFFIXES, Piece, Reading, is_spectrogram
from mgr_tf.data.readers import load_spectrogram
from mgr_tf.features.clips import clip_features
from mgr_tf.features.decode import SILENCE_DB, shortest_seconds
from mgr_tf.models import get_feature_type
from mgr_tf.serving.batch import FileResult, predict_inputs
from mgr_tf.serving.export import read_export_config, resolve_model_dir
from mgr_tf.tasks import task_of_outputs

__all__ = ["SPECTROGRAM_SUFFIXES", "Predictor", "format_result", "summarise_predictions"]

MIN_TAIL_SECONDS = 10.0  # a last partial window shorter than this is dropped (unless it is the only one)
BATCH_SIZE = 16  # windows per model call


class Predictor:
    """A loaded export and what it needs to turn files into model inputs.

    Args:
        model_dir: an export's version folder or its model folder (the highest version is used).
        min_seconds: recordings shorter than this are refused; None = ingest's default (the clip length less
            1 s, at most half the clip).
        silence_db: recordings whose peak is at or below this level (dBFS) are refused.
        batch_size: windows per model call.
        frame_cap: a `.npy` input longer than this many frames is refused from its header.
        size_cap_mb: a `.npy` input holding more MiB of data than this is refused from its header.
    """

    def __init__(self, model_dir: str | Path, *, min_seconds: float | None = None, silence_db: float = SILENCE_DB,
                 batch_size: int = BATCH_SIZE, frame_cap: int = DEFAULT_FRAME_CAP,
                 size_cap_mb: float = DEFAULT_SIZE_CAP_MB):
        self.model_dir = resolve_model_dir(model_dir)
        self.config = read_export_config(self.model_dir)
        try:
            self.loaded = tf.saved_model.load(str(self.model_dir))
        except Exception as exc:  # a corrupt SavedModel raises several error types
            raise UserError(f"{self.model_dir}: cannot load the SavedModel ({type(exc).__name__}: {exc})") from None
        config_path = self.model_dir / "assets" / "config.json"
        try:
            self.task = self.config["task"]
            self.task_obj = task_of_outputs(self.task, self.config.get("targets"))
            self.num_bands = int(self.config["num_bands"])
            self.features = self.config["data"]["features"]
            self.beat = bool(self.config["data"]["beat"])
            self.feature_config = from_dict(FeatureConfig, self.config["features"])
        except KeyError as exc:
            raise UserError(f"{config_path}: lacks {exc} (not a genre or emotion export; a tagger export needs "
                            "--tags)") from None
        except (TypeError, ValueError) as exc:
            raise UserError(f"{config_path}: {exc}") from None
        self.classification = self.task_obj.classification
        self.class_names = list(self.config.get("class_names", []))
        # serving_waveform's rate: the feature config's, or the encoder front end's (musicnn: 16 kHz).
        self.sample_rate = int(self.config.get("waveform_sample_rate", self.feature_config.sample_rate))
        self.spectrogram_fn = self.loaded.signatures["serving_default"]
        signatures = self.loaded.signatures
        self.waveform_fn = signatures["serving_waveform"] if "serving_waveform" in signatures else None
        clip = self.feature_config.clip_seconds
        self.batch_size = batch_size
        self.prefetch = max(8, batch_size)  # windows decoded ahead of the model
        # Decoding is about half of a file's time beside a CNN: one decoding process per core pays even on two.
        self.workers = default_workers()
        self.reading = Reading(self.sample_rate if self.waveform_fn is not None else self.feature_config.sample_rate,
                               window_seconds=clip, min_tail_seconds=MIN_TAIL_SECONDS,
                               min_seconds=shortest_seconds(clip, min_seconds), silence_db=silence_db,
                               short_hint="use --min-seconds", frame_cap=frame_cap, size_cap_mb=size_cap_mb)

    # ------------------------------------------------------------------ inputs
    def spectrogram_from_file(self, path: Path) -> np.ndarray:
        """A (time, bands) array for this model from a `.npy`/`.npy.gz` file in either orientation."""
        array = load_spectrogram(path, num_bands=None, frame_cap=self.reading.frame_cap,
                                 size_cap_mb=self.reading.size_cap_mb)
        return self.spectrogram_from_array(array, path)

    def spectrogram_from_array(self, array: np.ndarray, path: str | Path) -> np.ndarray:
        """A (time, bands) array for this model from a stored spectrogram in either orientation (`path` names it).

        Where only one reading fits (an axis of the model's bands, or of the 140 fused bands), it is taken. Where
        both an array of the model's bands and a fused one fit (e.g. (140, 128) for a mel model: 128 fused frames,
        or 140 frames of 128 mel bands), the fused reading is taken only if its 12 chroma rows are chroma (within
        [0, 1]); otherwise the model's bands, first axis first (the stored (bands, time) convention).
        """
        bands_first = _orientation(array, self.num_bands)
        if bands_first is None:
            raise UserError(f"{path}: shape {array.shape} has no axis of {self.num_bands} bands "
                            f"({self.features}) or {FUSED_BANDS} (fused), which this model takes")
        if bands_first:
            array = array.T
        if array.shape[1] == FUSED_BANDS and self.num_bands != FUSED_BANDS:
            if get_feature_type(self.features).stored:
                raise UserError(f"{path}: a fused array cannot feed this model: its {self.features} input is "
                                "computed from the audio (give the audio file)")
            array = np.asarray(get_feature_type(self.features).derive(array, self.feature_config))
        return np.ascontiguousarray(array, dtype=np.float32)

    def _features_in_python(self, window: np.ndarray) -> np.ndarray:
        # The dataset converter's own function, so the model sees the arrays it was trained on.
        full, beat = clip_features(window, self.feature_config, beat=self.beat)
        return np.asarray(get_feature_type(self.features).derive(beat if self.beat else full, self.feature_config),
                          np.float32)

    # ------------------------------------------------------------------ the batch engine's side
    def examples(self, piece: Piece, path: str) -> tuple[str, np.ndarray]:
        """(signature, (1, ...) model input) of one window or spectrogram of the file `path`."""
        if piece.spectrogram:
            return "serving_default", self.spectrogram_from_array(piece.data, path)[None]
        if self.waveform_fn is not None:
            return "serving_waveform", np.asarray(piece.data, np.float32)[None]
        return "serving_default", self._features_in_python(piece.data)[None]

    def run(self, signature: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The signature's outputs for a batch of examples."""
        outputs = self.loaded.signatures[signature](tf.constant(batch))
        return {name: value.numpy() for name, value in outputs.items()}

    def combine(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A window's outputs from those of its one example."""
        return {name: value[0] for name, value in outputs.items()}

    def score_columns(self) -> list[str]:
        """The score columns of a row (`mgr_tf.serving.rows`): genre and each class, or each emotion."""
        return ["genre", *self.class_names] if self.classification else list(self.task_obj.outputs)

    def scores(self, outputs: list[dict]) -> dict:
        """The scores of windows' outputs (averaged), keyed by `score_columns`."""
        summary = self._summarise(outputs)
        if self.classification:
            return {"genre": summary["genre"], **{name: summary["probabilities"][name] for name in self.class_names}}
        return {name: summary[name] for name in self.score_columns()}

    # ------------------------------------------------------------------ predictions
    def predict_file(self, path: str | Path) -> dict:
        """Predictions for one file: averaged values plus, for audio, the per-window values.

        Raises:
            UserError: the file is missing, empty, undecodable, too short, silent or does not fit the model.
        """
        [result] = predict_inputs(self, [str(path)], workers=1)
        if result.problem is not None:
            raise UserError(result.problem)
        return self.result_of(result)

    def result_of(self, result: FileResult) -> dict:
        """What `predict --json` prints for a file: its averaged values and, for audio, each window's."""
        outputs = result.outputs
        summary = {"input": result.input, **self._summarise(outputs)}
        if len(outputs) > 1 or not is_spectrogram(result.input):
            summary["windows"] = [self._summarise([o]) for o in outputs]
        return summary

    def _summarise(self, outputs: list[dict]) -> dict:
        return summarise_predictions(self.classification, outputs, self.class_names)


def _orientation(array: np.ndarray, num_bands: int) -> bool | None:
    """Whether a 2-D stored array is (bands, time) (True) or (time, bands) (False) for a model of `num_bands`
    bands, which also takes the 140 fused bands; None when no axis fits (see `Predictor.spectrogram_from_array`)."""
    own = [axis for axis in (0, 1) if array.shape[axis] == num_bands]
    fused = [axis for axis in (0, 1) if array.shape[axis] == FUSED_BANDS and num_bands != FUSED_BANDS]
    if own and fused:
        chroma = np.take(array, np.arange(FUSED_BANDS - 12, FUSED_BANDS), axis=fused[0])
        if float(chroma.min()) >= 0.0 and float(chroma.max()) <= 1.0:
            return fused[0] == 0
    if own or fused:
        return (own or fused)[0] == 0
    return None


def summarise_predictions(classification: bool, outputs: Sequence[Mapping], class_names: Sequence[str]) -> dict:
    """One prediction from the serving outputs of several windows of a file (averaged).

    Classification: the genre with the highest mean probability, and every class's mean probability (most likely
    first); regression: each target's mean.
    """
    if classification:
        probs = np.mean([o["probabilities"] for o in outputs], axis=0)
        order = np.argsort(-probs)
        return {"genre": class_names[int(order[0])],
                "probabilities": {class_names[i]: float(probs[i]) for i in order}}
    return {name: float(np.mean([o[name] for o in outputs])) for name in outputs[0]}


def format_result(result: dict, top_k: int) -> str:
    """One readable line per input."""
    if "probabilities" in result:
        top = list(result["probabilities"].items())[:top_k]
        body = ", ".join(f"{name} {p:.3f}" for name, p in top)
    else:
        body = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k not in ("input", "windows"))
    windows = f" (mean of {len(result['windows'])} windows)" if len(result.get("windows", [])) > 1 else ""
    return f"{result['input']}: {body}{windows}"
