"""The task registry: one place per task says what a model predicts.

A task (keras-hub's idea of a task on top of a backbone) declares its outputs, the labels its data must
carry, how its targets are decoded from dataset examples, its heads, losses, metrics, early-stopping monitor
and serving outputs. The data pipeline, the models, training, export and predict ask the task instead of
branching on its name. The registry imports no TensorFlow (the tasks use it inside their methods).

Regression targets come from the data: `regression` (alias `multitask`) predicts every target of the data, or
those the run names; any single target is a task by its own name (`task_for`). The published targets'
names (`valence`, `energy`, `danceability`) are registered as such.

Adding a task = one module with a `Task` subclass + one `register_task` line (see `tests/test_extension.py`).
"""

from __future__ import annotations

from typing import Sequence

from mgr_tf.core.config import RegressionConfig
from mgr_tf.core.published import EMOTIONS
from mgr_tf.core.registry import Registry
from mgr_tf.tasks.base import Task
from mgr_tf.tasks.genre import GenreTask
from mgr_tf.tasks.regression import RegressionTask

TASKS: Registry[Task] = Registry("task")
register_task = TASKS.register
get_task = TASKS.lookup


def task_for(name: str, data_targets: Sequence[str] = EMOTIONS, selected: Sequence[str] = ()) -> Task:
    """The task `name` for data whose regression targets are `data_targets`.

    A registered task as it is, a regression task that takes its targets from the data bound to them
    (`selected`, or all of `data_targets`), or, for a target's own name, the task predicting that target.

    Args:
        name: the `--task` value.
        data_targets: the regression targets of the data (the columns of its label CSV).
        selected: the targets a regression task of the data predicts (`--targets`); () = all.

    Raises:
        ValueError: an unknown name (naming the registered tasks and the data's targets), a selected or
            decoded target the data does not have, or targets selected for a task that does not take them.
    """
    data_targets = tuple(data_targets)
    if name not in TASKS and name in data_targets:
        task = RegressionTask(name, (name,))
    elif name in TASKS:
        task = TASKS[name]
    else:
        raise ValueError(f"task must be one of {tuple(TASKS)} or a regression target of the data "
                         f"({', '.join(data_targets) or 'none'}), got {name!r}")
    if selected and not (isinstance(task, RegressionTask) and task.from_data):
        raise ValueError(f"--targets picks the targets of --task regression (or multitask), not of --task {name}")
    if isinstance(task, RegressionTask):
        if task.from_data:
            task = task.bind(tuple(selected) or data_targets)
        missing = [t for t in task.columns if t not in data_targets]
        if missing:
            raise ValueError(f"--task {name} needs the target {missing[0]!r}, which the data does not have (its "
                             f"targets: {', '.join(data_targets) or 'none'})")
    return task


def task_of_outputs(name: str, outputs: Sequence[str] | None = None) -> Task:
    """The task of a trained model whose regression outputs were `outputs` (as its config.json records them).

    For reading back runs and exports, whose data may be elsewhere: a registered task as it is (a regression
    task of the data's targets bound to `outputs`), or the single-target task of a target's own name.

    Args:
        name: the run's task.
        outputs: its regression outputs; None = the published targets (runs written before targets came from
            the data).
    """
    outputs = tuple(EMOTIONS if outputs is None else outputs)
    task = TASKS.get(name)
    if task is None:
        return RegressionTask(name, outputs or (name,))
    if isinstance(task, RegressionTask) and task.from_data:
        return task.bind(outputs)
    return task


def task_outputs(name: str, data_targets: Sequence[str] = EMOTIONS) -> tuple[str, ...]:
    """The output names of a task's model (= the target keys of its data)."""
    return task_for(name, data_targets).outputs


def task_losses(name: str, regression: RegressionConfig = RegressionConfig(),
                data_targets: Sequence[str] = EMOTIONS) -> dict:
    """The loss of every output of a task's model, keyed by output name (ready for `compile(loss=...)`)."""
    return task_for(name, data_targets).losses(regression)


register_task(GenreTask())
register_task(RegressionTask("regression"))
register_task(RegressionTask("multitask"))
for _target in EMOTIONS:
    register_task(RegressionTask(_target, (_target,)))

__all__ = ["TASKS", "GenreTask", "RegressionTask", "Task", "get_task", "register_task", "task_for", "task_losses",
           "task_of_outputs", "task_outputs"]
