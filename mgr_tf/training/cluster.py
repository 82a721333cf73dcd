"""The cluster of a distributed run, read from `TF_CONFIG`; imports no TensorFlow (flags are checked at once).

`TF_CONFIG` is the variable `tf.distribute` reads: the cluster's tasks and this process's task, e.g.
`{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}`. The
training tasks are the "chief" (if the cluster has one) and the "worker"s; their rank is their place in that
order (the order `MultiWorkerMirroredStrategy` numbers them in). The chief is rank 0: the "chief" task, else
worker 0. It alone keeps the run folder (history, checkpoints, report, export); every other worker runs the
same run in a scratch folder inside it, `workertemp_<rank>/`, removed when the run ends (see
docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mgr_tf.core.cli import UserError

TRAINING_TASKS = ("chief", "worker")
SCRATCH_PREFIX = "workertemp_"


@dataclass(frozen=True)
class Task:
    """This process's task in the cluster.

    Args:
        type: "chief" or "worker".
        index: its index among the tasks of its type.
        rank: its place among all training tasks (chief first, then the workers by index).
        num_workers: how many training tasks the cluster has.
    """

    type: str
    index: int
    rank: int
    num_workers: int

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def tf_config() -> dict:
    """`TF_CONFIG` parsed ({} when it is unset or empty).

    Raises:
        UserError: it is not a JSON object.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"TF_CONFIG is not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UserError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def this_task() -> Task | None:
    """This process's task, or None when `TF_CONFIG` names no cluster.

    Raises:
        UserError: a task type other than chief or worker, an index outside the cluster, or no task at all.
    """
    config = tf_config()
    cluster = config.get("cluster") or {}
    if not cluster:
        return None
    task = config.get("task") or {}
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in TRAINING_TASKS:
        raise UserError(f"TF_CONFIG task type {kind!r} is not supported: training tasks are 'chief' and 'worker' "
                        "(no evaluator or parameter servers; see docs/distributed.md)")
    unknown = sorted(set(cluster) - set(TRAINING_TASKS))
    if unknown:
        raise UserError(f"TF_CONFIG cluster has {', '.join(unknown)} tasks: only 'chief' and 'worker' are supported")
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG cluster has more than one chief")
    tasks = [(kind_, i) for kind_ in TRAINING_TASKS for i in range(len(cluster.get(kind_, [])))]
    if (kind, index) not in tasks:
        raise UserError(f"TF_CONFIG task {kind} {index} is not in its cluster ({len(cluster.get(kind, []))} "
                        f"{kind} task(s))")
    return Task(kind, int(index), tasks.index((kind, index)), len(tasks))


def resolve_mode(mode: str, gpus: int = 0) -> str:
    """The mode that `auto` stands for here (other modes as given).

    Args:
        mode: none, mirrored, multiworker or auto.
        gpus: GPUs of this host.
    """
    if mode != "auto":
        return mode
    task = this_task()
    if task is not None and task.num_workers > 1:
        return "multiworker"
    return "mirrored" if gpus > 1 else "none"


def problem(mode: str) -> str | None:
    """What keeps `--distribute mode` from running here (None = nothing)."""
    try:
        task = this_task()
    except UserError as exc:
        return str(exc) if mode in ("multiworker", "auto") else None
    if mode == "multiworker" and task is None:
        return ("--distribute multiworker needs TF_CONFIG: the cluster's workers and this process's task "
                "(see docs/distributed.md)")
    return None


def is_chief() -> bool:
    """True unless this process is a multi-worker task other than the chief."""
    task = this_task()
    return task is None or task.is_chief


def scratch_dir(run_dir: Path, rank: int) -> Path:
    """The scratch run folder of a non-chief worker, inside the chief's run folder."""
    return Path(run_dir) / f"{SCRATCH_PREFIX}{rank}"


def chief_dir(run_dir: Path) -> Path:
    """The chief's run folder of a run folder (itself, or the parent of a worker's scratch folder)."""
    run_dir = Path(run_dir)
    return run_dir.parent if run_dir.name.startswith(SCRATCH_PREFIX) else run_dir


def local_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 now (the OS picks them), for a cluster of local worker processes
    (the tests and `bench --only distribute`)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
