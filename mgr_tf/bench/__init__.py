"""Benchmarks: `python -m mgr_tf.bench [--only NAME ...] [--quick] [--json FILE]`.

Each benchmark is a module in this package listed in `BENCHMARKS`, exposing
`run(quick: bool) -> list[Row]`. Targets are ratios measured side by side in one run (the
machines are shared and noisy), never absolute timings in tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

# name -> module (imported lazily, so one benchmark's heavy imports never slow another).
BENCHMARKS: dict[str, str] = {
    "data": "mgr_tf.bench.data_bench",
    "models": "mgr_tf.bench.models_bench",
    "softrank": "mgr_tf.bench.softrank_bench",
    "serving": "mgr_tf.bench.serving_bench",
    "features": "mgr_tf.bench.features_bench",
    "real": "mgr_tf.bench.real_bench",
    "encoder": "mgr_tf.bench.encoder_bench",
    "emotion": "mgr_tf.bench.emotion_bench",
    "distribute": "mgr_tf.bench.distribute_bench",
    "predict": "mgr_tf.bench.predict_bench",
}
# Long benchmarks that need data from outside the repository, or start worker processes: run only when named with
# --only.
ON_REQUEST = {"real", "encoder", "emotion", "distribute", "predict"}


@dataclass
class Row:
    """One line of the benchmark table.

    Args:
        bench: benchmark name.
        case: what was measured (e.g. "full, batch 32").
        value: the measurement.
        unit: its unit (e.g. "examples/s", "ms").
        ratio: value relative to the baseline measured in the same run (None if no baseline).
        baseline: what the ratio compares against.
        target: the target the ratio is held to, in words (empty if none).
        extra: anything else worth recording.
    """

    bench: str
    case: str
    value: float
    unit: str
    ratio: float | None = None
    baseline: str = ""
    target: str = ""
    extra: dict = field(default_factory=dict)


def timeit(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> list[float]:
    """Runs `fn` `warmup` times untimed, then `repeat` times; returns the seconds of each run."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
