"""Model benchmark: parameters, training and inference throughput per family at the default sizes.

Inputs are the full (1293-frame) and beat-synchronous (129-frame) fused spectrograms (140 bands).
Each family is timed in the same run, and throughput is reported relative to the CNN on the same
input, so the ratios stay comparable on a shared machine.
"""

from __future__ import annotations

import dataclasses
import statistics

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.bench import Row, timeit
from mgr_tf.core.config import BEAT_FRAMES, FULL_FRAMES, FUSED_BANDS
from mgr_tf.models import BACKBONES, get_backbone, model_config
from mgr_tf.models.build import build_model
from mgr_tf.tasks import get_task, task_losses


def families() -> tuple[str, ...]:
    """Every registered backbone on spectrograms, the CNN (the reference of the ratios) first (a pretrained encoder,
    which takes its own stored input, is benchmarked by `encoder_bench`)."""
    return ("cnn", *(name for name, spec in BACKBONES.items() if name != "cnn" and spec.encoder is None))


def _measure(family: str, frames: int, batch: int, repeat: int) -> dict:
    # Beat-synchronous inputs are short: a backbone that pools frames keeps every frame there, as documented.
    options = {f.name for f in dataclasses.fields(get_backbone(family).options)}
    config = model_config(family, **({"lstm_frame_stride": 1} if frames != FULL_FRAMES and
                                       "lstm_frame_stride" in options else {}))
    model = build_model(config, get_task("genre"), num_bands=FUSED_BANDS, frames=frames)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=task_losses("genre"))
    rng = np.random.default_rng(0)
    x = {"spectrogram": rng.standard_normal((batch, frames, FUSED_BANDS)).astype(np.float32)}
    y = {"genre": rng.integers(0, 10, batch).astype(np.int32)}
    train = timeit(lambda: model.train_on_batch(x, y), repeat=repeat, warmup=1)
    infer_fn = tf.function(lambda inputs: model(inputs, training=False), jit_compile=True)
    infer = timeit(lambda: infer_fn(x)["genre"].numpy(), repeat=repeat, warmup=1)
    return {"params": model.count_params(), "train": batch / statistics.median(train),
            "infer": batch / statistics.median(infer)}


def run(quick: bool = False) -> list[Row]:
    """Benchmarks every family on full and beat inputs.

    Args:
        quick: smaller batches and fewer repeats (a smoke run).
    """
    rows: list[Row] = []
    batch, repeat = (4, 2) if quick else (16, 5)
    for label, frames in (("full", FULL_FRAMES), ("beat", BEAT_FRAMES)):
        results = {family: _measure(family, frames, batch, repeat) for family in families()}
        base = results["cnn"]
        for family, r in results.items():
            case = f"{family.upper()}, {label} ({frames} frames), batch {batch}"
            rows.append(Row("models", f"{case}: parameters", float(r["params"]), "params"))
            rows.append(Row("models", f"{case}: training", r["train"], "examples/s",
                            ratio=r["train"] / base["train"], baseline="CNN training, same input"))
            rows.append(Row("models", f"{case}: inference", r["infer"], "examples/s",
                            ratio=r["infer"] / base["infer"], baseline="CNN inference, same input"))
    return rows
