"""Tagging audio files with a converted musicnn model (tags averaged over the clip's 3 s patches)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mgr_tf.models.musicnn.frontend import load_audio_16k, musicnn_frontend
from mgr_tf.models.musicnn.presets import PRETRAINED


def _tags_of(model, tags: Sequence[str] | None) -> list[str]:
    if tags is not None:
        return list(tags)
    if model.name in PRETRAINED:
        return list(PRETRAINED[model.name].tags)
    raise ValueError(f"model {model.name!r} is not one of {sorted(PRETRAINED)}: pass its tag names")


def tag_names_of(model) -> list[str]:
    """The tag names of a converted musicnn model (from its name, e.g. MSD_musicnn)."""
    return _tags_of(model, None)


def clip_outputs(model, waveform_16k: np.ndarray, batch_size: int = 32) -> dict:
    """Per-patch outputs of a musicnn port on one 16 kHz clip: {"tags": (P, 50), "embedding": (P, D)}."""
    patches = musicnn_frontend(np.asarray(waveform_16k, np.float32)).numpy()
    outs = [model(patches[i:i + batch_size], training=False) for i in range(0, len(patches), batch_size)]
    return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in outs[0]}


def tag(model, paths: Sequence[str | Path], top_k: int = 5, tags: Sequence[str] | None = None) -> list[dict]:
    """Top-`top_k` tags of each audio file (tag probabilities averaged over its 3 s patches).

    Args:
        model: a converted musicnn model (`keras.saving.load_model` of the converter's output).
        paths: audio files (any rate; resampled to 16 kHz).
        top_k: tags per file.
        tags: tag names (default: those of the model's name, e.g. MSD_musicnn).

    Returns:
        One {"path", "tags": [(tag, probability), ...]} per file, most likely first.
    """
    names = _tags_of(model, tags)
    results = []
    for path in paths:
        probs = clip_outputs(model, load_audio_16k(path))["tags"].mean(axis=0)
        order = np.argsort(-probs)[:top_k]
        results.append({"path": str(path), "tags": [(names[i], float(probs[i])) for i in order]})
    return results
