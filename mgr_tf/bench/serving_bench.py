"""SavedModel inference through the loaded `serving_default` signature vs the same Keras model's direct call.

Per family at default sizes (random weights; timing does not depend on them): batch-1 latency (median) and
batch-64 throughput on full-length (1293-frame) fused input. Baseline: `model(x, training=False)` in the same
process, same inputs. Target: the served path within 1.2x of the direct call (ratio = served time / direct
time for latency; served throughput / direct throughput for batch 64).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import tensorflow as tf

from mgr_tf.bench import Row, timeit
from mgr_tf.core.config import FULL_FRAMES, FeatureConfig, to_dict
from mgr_tf.core.published import GENRES_10
from mgr_tf.models import BACKBONES, model_config
from mgr_tf.models.build import build_model
from mgr_tf.serving.export import export_model
from mgr_tf.serving.predict import Predictor
from mgr_tf.tasks import get_task


def run(quick: bool = False) -> list[Row]:
    rows = []
    frames = 256 if quick else FULL_FRAMES
    repeat = 3 if quick else 15
    big = 8 if quick else 64
    rng = np.random.default_rng(0)
    one = tf.constant(rng.normal(size=(1, frames, 140)).astype(np.float32))
    batch = tf.constant(rng.normal(size=(big, frames, 140)).astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        for family in (name for name, spec in BACKBONES.items() if spec.encoder is None):  # encoders: encoder_bench
            model = build_model(model_config(family), get_task("genre"), num_bands=140, frames=frames)
            path = export_model(model, family, task="genre", class_names=GENRES_10, num_bands=140, config={},
                                root=tmp)
            signature = tf.saved_model.load(str(path)).signatures["serving_default"]
            cases = {
                "direct": lambda x: model({"spectrogram": x}, training=False),
                "served": lambda x: signature(spectrogram=x),
            }
            lat = {k: float(np.median(timeit(lambda f=f: f(one), repeat=repeat, warmup=2))) for k, f in cases.items()}
            thr = {k: big / float(np.median(timeit(lambda f=f: f(batch), repeat=max(2, repeat // 3), warmup=1)))
                   for k, f in cases.items()}
            rows.append(Row("serving", f"{family} batch 1 latency, served", lat["served"] * 1e3, "ms",
                            ratio=lat["served"] / lat["direct"], baseline="Keras direct call",
                            target="<= 1.2x", extra={"direct_ms": lat["direct"] * 1e3, "frames": frames}))
            rows.append(Row("serving", f"{family} batch {big} throughput, served", thr["served"], "examples/s",
                            ratio=thr["served"] / thr["direct"], baseline="Keras direct call",
                            target=">= 0.83x (time within 1.2x)", extra={"direct": thr["direct"], "frames": frames}))
        rows.append(_audio_prediction_latency(tmp, repeat))
    return rows


def _audio_prediction_latency(tmp: str, repeat: int) -> Row:
    """End to end: a 30 s wav file -> decode -> in-graph features -> CNN genre probabilities (`mgr_tf.predict`)."""
    cfg = FeatureConfig()
    model = build_model(model_config("cnn"), get_task("genre"), num_bands=140, frames=1293)
    config = {"task": "genre", "class_names": list(GENRES_10), "num_bands": 140, "features": to_dict(cfg),
              "data": {"features": "fused", "beat": False}}
    path = export_model(model, "audio", task="genre", class_names=GENRES_10, num_bands=140, config=config,
                        root=tmp, waveform=True, feature_config=cfg)
    rng = np.random.default_rng(0)
    t = np.arange(int(cfg.clip_seconds * cfg.sample_rate)) / cfg.sample_rate
    wave = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    wav = Path(tmp) / "clip.wav"
    sf.write(wav, wave.astype(np.float32), cfg.sample_rate)
    predictor = Predictor(path)
    seconds = float(np.median(timeit(lambda: predictor.predict_file(wav), repeat=repeat, warmup=1)))
    return Row("serving", "audio file -> genre (30 s wav, decode + in-graph features + CNN)", seconds * 1e3, "ms",
               extra={"signature": "serving_waveform"})
