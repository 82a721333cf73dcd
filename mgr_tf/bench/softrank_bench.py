"""Soft-rank benchmark: pairwise vs permutahedron forward+backward time, and the Spearman share of a step.

1. For n in {32, 128, 512, 2048}: one graph (tf.function) forward+backward of `soft_rank` on n values,
   permutahedron relative to pairwise.
2. A CNN valence training step (batch 32, full 1293-frame input) with MSE only and with
   MSE + Spearman, timed side by side: the share of the step spent in the Spearman term
   (target <= 10%).
"""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.bench import Row, timeit
from mgr_tf.core.config import FULL_FRAMES, FUSED_BANDS, RegressionConfig
from mgr_tf.losses import SpearmanLoss, soft_rank
from mgr_tf.models import model_config
from mgr_tf.models.build import build_model
from mgr_tf.tasks import get_task, task_losses


def _rank_time(method: str, n: int, repeat: int) -> float:
    x = tf.constant(np.random.default_rng(n).standard_normal((1, n)).astype(np.float32))

    @tf.function
    def step(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            objective = tf.reduce_sum(soft_rank(v, method, 0.1) * v)
        return tape.gradient(objective, v)

    return statistics.median(timeit(lambda: step(x).numpy(), repeat=repeat, warmup=2))


def _step_times(batch: int, frames: int, repeat: int, method: str) -> tuple[float, float]:
    """Median step times of the same CNN compiled with MSE only and with MSE + Spearman.

    The two steps alternate, so load from other processes hits both alike.
    """
    rng = np.random.default_rng(0)
    x = {"spectrogram": rng.standard_normal((batch, frames, FUSED_BANDS)).astype(np.float32)}
    y = {"valence": rng.random((batch, 1)).astype(np.float32)}
    models = []
    for weight in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        model = build_model(model_config("cnn"), get_task("valence"), num_bands=FUSED_BANDS, frames=frames)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=task_losses("valence", RegressionConfig(spearman_weight=weight, spearman_method=method)))
        model.train_on_batch(x, y)
        models.append(model)
    times: list[list[float]] = [[], []]
    for _ in range(repeat):
        for i, model in enumerate(models):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _loss_time(method: str, batch: int, repeat: int) -> float:
    """Forward + backward of the Spearman term alone on one batch of predictions, in graph."""
    loss = SpearmanLoss(method)
    rng = np.random.default_rng(1)
    y = tf.constant(rng.random((batch, 1)).astype(np.float32))
    p = tf.constant(rng.random((batch, 1)).astype(np.float32))

    @tf.function
    def step(pred):
        with tf.GradientTape() as tape:
            tape.watch(pred)
            value = loss(y, pred)
        return tape.gradient(value, pred)

    return statistics.median(timeit(lambda: step(p).numpy(), repeat=repeat * 10, warmup=2))


def run(quick: bool = False) -> list[Row]:
    """Runs both parts.

    Args:
        quick: fewer sizes, a shorter input and fewer repeats (a smoke run).
    """
    rows: list[Row] = []
    sizes, repeat = ((32, 512), 3) if quick else ((32, 128, 512, 2048), 10)
    for n in sizes:
        pairwise = _rank_time("pairwise", n, repeat)
        perm = _rank_time("permutahedron", n, repeat)
        rows.append(Row("softrank", f"pairwise forward+backward, n={n}", pairwise * 1e3, "ms"))
        rows.append(Row("softrank", f"permutahedron forward+backward, n={n}", perm * 1e3, "ms",
                        ratio=perm / pairwise, baseline="pairwise, same n"))
    frames = 256 if quick else FULL_FRAMES
    step_repeat = 3 if quick else 7
    for method in ("permutahedron", "pairwise"):
        without, with_term = _step_times(32, frames, step_repeat, method)
        loss_time = _loss_time(method, 32, step_repeat)
        rows.append(Row("softrank", f"CNN step, batch 32, {frames} frames, MSE only (vs {method})",
                        without * 1e3, "ms"))
        rows.append(Row("softrank", f"CNN step, batch 32, {frames} frames, MSE + Spearman ({method})",
                        with_term * 1e3, "ms", ratio=with_term / without, baseline="MSE-only step, interleaved"))
        rows.append(Row("softrank", f"Spearman term alone, batch 32, forward+backward ({method})", loss_time * 1e3,
                        "ms"))
        rows.append(Row("softrank", f"Spearman share of the CNN step ({method})", 100.0 * loss_time / with_term,
                        "% of step", baseline="term alone / MSE + Spearman step", target="<= 10%",
                        extra={"step_difference_share": (with_term - without) / with_term}))
    return rows
