"""Distributed-training benchmark: the training step of 1 vs 2 workers with the same global batch, and its
all-reduce times, from which docs/distributed.md projects the scaling on N hosts.

Each case runs worker processes on 127.0.0.1 (`python -m mgr_tf.bench.distribute_bench --worker ...`, TF_CONFIG
per worker) that time the real step of `mgr_tf.training.distributed` (synchronised batch norm, gradients
summed over replicas, metrics gathered) on the default run's model and input: the CNN on 256-frame MFCC
patches (20 bands), 10 genres, global batch 32, synthetic data. Measured: the step of 1 worker at batches 8,
16, 32 and 64 (fitted as t0 + c * batch), of 2 workers (batch 32 in all, 16 each); the all-reduce of a
gradient-sized float32 vector and of one float between 2 workers; the collectives in one step's graph.
Projected (rows marked so): the step on N hosts from those numbers with an assumed network (see `project`).
On one machine the 2 workers share its cores, so they show the communication overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.bench import Row, timeit
from mgr_tf.core.config import RegressionConfig
from mgr_tf.models import model_config
from mgr_tf.models.build import build_model
from mgr_tf.tasks import get_task
from mgr_tf.training import distributed
from mgr_tf.training.cluster import local_ports

FRAMES, BANDS, CLASSES, BATCH = 256, 20, 10, 32
# The network assumed by the projection: 10 Gb/s per host and 50 microseconds per collective hop (a data-centre
# LAN); both are assumptions, not measurements.
ASSUMED_BANDWIDTH = 10e9 / 8  # bytes per second
ASSUMED_LATENCY = 50e-6  # seconds


def worker(rank: int, ports: list[int], batches: list[int], steps: int) -> dict:
    """One worker's measurements (run in its own process: the strategy must come before any TensorFlow op).

    The step is timed at each global batch of `batches`, `steps` steps each, in interleaved rounds (the machine
    is shared: load from other processes hits every batch size alike)."""
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                          "task": {"type": "worker", "index": rank}})
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(0)
    task = get_task("genre")
    model = build_model(model_config("cnn"), task, num_bands=BANDS, frames=FRAMES, num_classes=CLASSES)
    twin = distributed.replicate(model, strategy, rank)
    with strategy.scope():
        twin.compile(optimizer=keras.optimizers.Adam(1e-3))
        twin.optimizer.build(twin.trainable_variables)
    trackers = distributed.Trackers(task, learned=False)
    step = distributed.train_step(strategy, twin, task, RegressionConfig(), trackers)

    def iterator(batch):
        per_replica = batch // strategy.num_replicas_in_sync

        def dataset_fn(context):
            rng = np.random.default_rng(context.input_pipeline_id)
            x = rng.standard_normal((per_replica * 4, FRAMES, BANDS)).astype(np.float32)
            y = rng.integers(0, CLASSES, per_replica * 4).astype(np.int32)
            return tf.data.Dataset.from_tensor_slices(({"spectrogram": x}, {"genre": y})).repeat().batch(per_replica)

        return iter(strategy.distribute_datasets_from_function(dataset_fn))

    iterators = {batch: iterator(batch) for batch in batches}
    times: dict[int, list[float]] = {batch: [] for batch in batches}
    rounds = 4
    for _ in range(rounds):
        for batch, it in iterators.items():
            times[batch] += timeit(lambda it=it: (step(it), float(trackers.loss.result())),
                                   repeat=max(1, steps // rounds), warmup=2)
    graph = step.get_concrete_function(iterators[batches[0]]).graph
    ops = [op.type for op in graph.get_operations()]
    for function in graph.as_graph_def().library.function:
        ops += [node.op for node in function.node_def]
    collectives = sum(op.startswith("Collective") for op in ops)
    params = int(sum(np.prod(v.shape) for v in twin.trainable_variables))

    def reduce_fn(size):
        values = tf.ones([size], tf.float32)

        @tf.function
        def reduce():
            return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(distributed.SUM, values))

        return lambda: strategy.experimental_local_results(reduce())[0].numpy()

    gradients = timeit(reduce_fn(params), repeat=steps, warmup=3)
    latency = timeit(reduce_fn(1), repeat=steps * 3, warmup=3)
    return {"step": {str(b): statistics.median(t) for b, t in times.items()},
            "all_reduce": statistics.median(gradients), "latency": statistics.median(latency), "params": params,
            "collectives": collectives, "replicas": strategy.num_replicas_in_sync}


def _case(workers: int, batches: list[int], steps: int) -> dict:
    """Runs `workers` worker processes and returns the chief's measurements."""
    ports = local_ports(workers)
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"worker{i}.json" for i in range(workers)]
        procs = [subprocess.Popen([sys.executable, "-m", "mgr_tf.bench.distribute_bench", "--worker", str(i), "--ports",
                                   ",".join(map(str, ports)), "--batches", *map(str, batches), "--steps", str(steps),
                                   "--out", str(outs[i])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for i in range(workers)]
        for proc in procs:
            _, err = proc.communicate(timeout=900)
            if proc.returncode:
                raise RuntimeError(f"distribute bench worker failed: {err[-2000:]}")
        return json.loads(outs[0].read_text())


def communication(hosts: int, all_reduce_bytes: float, collectives: int, bandwidth: float = ASSUMED_BANDWIDTH,
                  latency: float = ASSUMED_LATENCY) -> float:
    """Projected communication of one step on `hosts` hosts (one worker each): a ring all-reduce of the gradients,
    2 (N - 1) / N * bytes / bandwidth, plus the step's collectives' latency, collectives * 2 (N - 1) * latency
    (a ring's 2 (N - 1) hops each).

    Args:
        hosts: N.
        all_reduce_bytes: bytes of the gradients.
        collectives: collective ops in one step (measured from the step's graph).
        bandwidth, latency: the network (assumed; see ASSUMED_*).
    """
    if hosts == 1:
        return 0.0
    return 2 * (hosts - 1) / hosts * all_reduce_bytes / bandwidth + collectives * 2 * (hosts - 1) * latency


def compute_model(measured: dict[int, float]) -> tuple[float, float]:
    """(t0, c) of t(b) = t0 + c * b, least squares over the measured one-worker steps (both clamped at >= 0)."""
    b = np.array(sorted(measured), float)
    t = np.array([measured[int(k)] for k in b])
    c, t0 = np.polyfit(b, t, 1)
    c = max(float(c), 0.0)
    return max(float(np.mean(t - c * b)), 0.0), c


def project(compute: tuple[float, float], all_reduce_bytes: float, collectives: int, hosts: int,
            batch: int = BATCH) -> float:
    """Projected step on `hosts` hosts (one worker each) with global batch `batch`: the per-host batch's compute,
    t0 + c * batch / N from `compute_model`, plus `communication`."""
    t0, c = compute
    return t0 + c * batch / hosts + communication(hosts, all_reduce_bytes, collectives)


def run(quick: bool = False) -> list[Row]:
    """The 1- vs 2-worker step and the all-reduce times (see the module docstring).

    Args:
        quick: fewer timed steps (a smoke run).
    """
    steps = 8 if quick else 40
    one = _case(1, [8, 16, BATCH, 64], steps)
    two = _case(2, [BATCH], steps)
    measured = {int(b): t for b, t in one["step"].items()}
    single, double = measured[BATCH], two["step"][str(BATCH)]
    mb = one["params"] * 4 / 1e6
    name = f"default CNN ({one['params']:,} parameters), {FRAMES}x{BANDS} MFCC patches"
    rows = [Row("distribute", f"{name}, 1 worker, global batch {BATCH}", single * 1e3, "ms/step")]
    for batch in sorted(measured):
        if batch != BATCH:
            rows.append(Row("distribute", f"{name}, 1 worker, batch {batch}", measured[batch] * 1e3, "ms/step",
                            ratio=measured[batch] / single, baseline=f"1 worker, batch {BATCH}"))
    rows += [
        Row("distribute", f"{name}, 2 workers on 127.0.0.1, global batch {BATCH}", double * 1e3, "ms/step",
            ratio=double / single, baseline=f"1 worker, batch {BATCH}",
            target="no speed-up on one 2-core host (the workers share its cores)",
            extra={"collectives_per_step": two["collectives"]}),
        Row("distribute", f"2-worker step minus 1 worker's step at batch {BATCH // 2} (communication and sharing)",
            (double - measured[BATCH // 2]) * 1e3, "ms", ratio=(double - measured[BATCH // 2]) / double,
            baseline="share of the 2-worker step"),
        Row("distribute", f"all-reduce of the gradients ({mb:.2f} MB float32), 2 workers on 127.0.0.1",
            two["all_reduce"] * 1e3, "ms", ratio=two["all_reduce"] / double, baseline="2-worker step"),
        Row("distribute", "all-reduce of one float (a collective's latency, with a function call), 2 workers",
            two["latency"] * 1e3, "ms"),
        Row("distribute", "collective ops in one training step's graph (sync batch norm, gradients, metrics)",
            float(two["collectives"]), "ops"),
    ]
    compute = compute_model(measured)
    rows.append(Row("distribute", "one-worker compute model t(b) = t0 + c b, fitted", compute[0] * 1e3, "ms (t0)",
                    extra={"c_ms_per_example": compute[1] * 1e3}))
    for batch in (BATCH, 256):
        base = compute[0] + compute[1] * batch
        for hosts in (2, 4, 8, 16):
            projected = project(compute, one["params"] * 4, two["collectives"], hosts, batch)
            rows.append(Row("distribute", f"PROJECTED {hosts} hosts, global batch {batch} (10 Gb/s and 50 us per "
                            "hop assumed)", projected * 1e3, "ms/step", ratio=base / projected,
                            baseline=f"speed-up vs 1 worker at batch {batch} (fitted)"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="a worker of the distribute benchmark (run by python -m mgr_tf.bench)")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--ports", required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[BATCH])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = worker(args.worker, [int(p) for p in args.ports.split(",")], args.batches, args.steps)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
