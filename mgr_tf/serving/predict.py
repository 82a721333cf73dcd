"""Predictions from an exported model (`python -m mgr_tf.predict MODEL_DIR INPUT... [--json] [--top-k K]`).

INPUT is a spectrogram (`.npy` / `.npy.gz`, stored (bands, time) or (time, bands); a 140-band fused array
also feeds a mel- or chroma-only model) or an audio file (wav, mp3, ogg, flac, ...). Audio longer than one
clip is cut into clip-length windows whose predictions are averaged; `--json` lists each window too.
Models exported with the `serving_waveform` signature compute features in the graph; the others
(beat-synchronous models) get features computed in Python with the same `FeatureConfig`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import FUSED_BANDS, FeatureConfig, from_dict
from mgr_tf.data.readers import load_spectrogram
from mgr_tf.features.clips import clip_features
from mgr_tf.features.spectral import load_audio
from mgr_tf.models import get_feature_type
from mgr_tf.serving.export import read_export_config, resolve_model_dir
from mgr_tf.tasks import task_of_outputs

SPECTROGRAM_SUFFIXES = (".npy", ".npy.gz")
MIN_TAIL_SECONDS = 10.0  # a last partial window shorter than this is dropped (unless it is the only one)


class Predictor:
    """A loaded export and what it needs to turn files into model inputs.

    Args:
        model_dir: an export's version folder or its model folder (the highest version is used).
    """

    def __init__(self, model_dir: str | Path):
        self.model_dir = resolve_model_dir(model_dir)
        self.config = read_export_config(self.model_dir)
        try:
            self.loaded = tf.saved_model.load(str(self.model_dir))
        except Exception as exc:  # a corrupt SavedModel raises several error types
            raise UserError(f"{self.model_dir}: cannot load the SavedModel ({type(exc).__name__}: {exc})") from None
        self.task = self.config["task"]
        self.class_names = list(self.config.get("class_names", []))
        self.num_bands = int(self.config["num_bands"])
        self.features = self.config["data"]["features"]
        self.beat = bool(self.config["data"]["beat"])
        self.feature_config = from_dict(FeatureConfig, self.config["features"])
        # serving_waveform's rate: the feature config's, or the encoder front end's (musicnn: 16 kHz).
        self.sample_rate = int(self.config.get("waveform_sample_rate", self.feature_config.sample_rate))
        self.spectrogram_fn = self.loaded.signatures["serving_default"]
        signatures = self.loaded.signatures
        self.waveform_fn = signatures["serving_waveform"] if "serving_waveform" in signatures else None

    # ------------------------------------------------------------------ inputs
    def spectrogram_from_file(self, path: Path) -> np.ndarray:
        """A (time, bands) array for this model from a `.npy`/`.npy.gz` file in either orientation."""
        array = load_spectrogram(path, num_bands=None)
        wanted = (self.num_bands, FUSED_BANDS)
        if array.shape[0] in wanted:
            array = array.T
        elif array.shape[1] not in wanted:
            raise UserError(f"{path}: shape {array.shape} has no axis of {self.num_bands} bands "
                            f"({self.features}) or {FUSED_BANDS} (fused), which this model takes")
        if array.shape[1] == FUSED_BANDS and self.num_bands != FUSED_BANDS:
            if get_feature_type(self.features).stored:
                raise UserError(f"{path}: a fused array cannot feed this model: its {self.features} input is "
                                "computed from the audio (give the audio file)")
            array = np.asarray(get_feature_type(self.features).derive(array, self.feature_config))
        return np.ascontiguousarray(array, dtype=np.float32)

    def windows_from_audio(self, path: Path) -> list[np.ndarray]:
        """Clip-length windows of a mono waveform at the model's sample rate."""
        rate = self.sample_rate if self.waveform_fn is not None else self.feature_config.sample_rate
        audio = load_audio(path, dataclasses.replace(self.feature_config, sample_rate=rate))
        clip = int(self.feature_config.clip_seconds * rate)
        full = len(audio) // clip
        windows = [audio[i * clip:(i + 1) * clip] for i in range(full)]
        tail = audio[full * clip:]
        if len(tail) and (not windows or len(tail) >= MIN_TAIL_SECONDS * rate):
            windows.append(tail)
        return windows

    # ------------------------------------------------------------------ predictions
    def _run(self, fn, tensor) -> dict[str, np.ndarray]:
        outputs = fn(tf.constant(tensor[None]))
        return {k: v.numpy()[0] for k, v in outputs.items()}

    def _features_in_python(self, window: np.ndarray) -> np.ndarray:
        # The dataset converter's own function, so the model sees the arrays it was trained on.
        full, beat = clip_features(window, self.feature_config, beat=self.beat)
        return np.asarray(get_feature_type(self.features).derive(beat if self.beat else full, self.feature_config),
                          np.float32)

    def predict_file(self, path: str | Path) -> dict:
        """Predictions for one file: averaged values plus, for audio, the per-window values."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: input file not found")
        if path.stat().st_size == 0:
            raise UserError(f"{path}: empty file")
        if path.name.endswith(SPECTROGRAM_SUFFIXES):
            try:
                outputs = [self._run(self.spectrogram_fn, self.spectrogram_from_file(path))]
            except ValueError as exc:
                raise UserError(str(exc)) from None
        else:
            try:
                windows = self.windows_from_audio(path)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            if self.waveform_fn is not None:
                outputs = [self._run(self.waveform_fn, w.astype(np.float32)) for w in windows]
            else:
                outputs = [self._run(self.spectrogram_fn, self._features_in_python(w)) for w in windows]
        result = {"input": str(path), **self._summarise(outputs)}
        if len(outputs) > 1 or not path.name.endswith(SPECTROGRAM_SUFFIXES):
            result["windows"] = [self._summarise([o]) for o in outputs]
        return result

    def _summarise(self, outputs: list[dict]) -> dict:
        task = task_of_outputs(self.task, self.config.get("targets"))
        return summarise_predictions(task.classification, outputs, self.class_names)


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
