"""The model a prediction command names: an export (`Predictor`) or, with `--tags`, a converted tagger
(`TagPredictor`), configured from plain values (the flags, also sent to Beam workers)."""

from __future__ import annotations

from mgr_tf.serving.predict import Predictor
from mgr_tf.serving.tagger import TagPredictor


def open_model(model_dir: str, *, tags: bool = False, precision: str = "float32", batch_size: int | None = None,
               min_seconds: float | None = None, silence_db: float | None = None, frame_cap: int | None = None,
               size_cap_mb: float | None = None):
    """The `Predictor` or `TagPredictor` the flags describe.

    Args:
        model_dir: the export folder, or with `tags` a `.keras` tagger or its tagger export.
        tags: a tagger (`predict --tags`).
        precision: the tagger's compute precision (`TagPredictor`).
        batch_size: examples per model call (None = the model's default).
        min_seconds: recordings shorter than this are refused (None = the model's default).
        silence_db: recordings whose peak is at or below this level (dBFS) are refused (None = the default).
        frame_cap, size_cap_mb: the caps on a `.npy` input (None = the defaults); a tagger takes audio only.
    """
    options = {"min_seconds": min_seconds}
    options.update({k: v for k, v in (("batch_size", batch_size), ("silence_db", silence_db)) if v is not None})
    if tags:
        return TagPredictor(model_dir, precision=precision, **options)
    caps = {k: v for k, v in (("frame_cap", frame_cap), ("size_cap_mb", size_cap_mb)) if v is not None}
    return Predictor(model_dir, **options, **caps)
