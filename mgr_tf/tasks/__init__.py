"""The task registry: one place per task says what a model predicts.

A task (keras-hub's idea of a task on top of a backbone) declares its outputs, the labels its data must
carry, how its targets are decoded from dataset examples, its heads, losses, metrics, early-stopping monitor
and serving outputs. The data pipeline, the models, training, export and predict ask the task instead of
branching on its name. The registry imports no TensorFlow (the tasks use it inside their methods).

Adding a task = one module with a `Task` subclass + one `register_task` line (see `tests/test_extension.py`).
"""

from __future__ import annotations

from mgr_tf.core.config import RegressionConfig
from mgr_tf.core.published import EMOTIONS
from mgr_tf.core.registry import Registry
from mgr_tf.tasks.base import Task
from mgr_tf.tasks.genre import GenreTask
from mgr_tf.tasks.regression import RegressionTask

TASKS: Registry[Task] = Registry("task")
register_task = TASKS.register
get_task = TASKS.lookup


def task_outputs(name: str) -> tuple[str, ...]:
    """The output names of a task's model (= the target keys of its data)."""
    return get_task(name).outputs


def task_losses(name: str, regression: RegressionConfig = RegressionConfig()) -> dict:
    """The loss of every output of a task's model, keyed by output name (ready for `compile(loss=...)`)."""
    return get_task(name).losses(regression)


register_task(GenreTask())
for _emotion in EMOTIONS:
    register_task(RegressionTask(_emotion, (_emotion,)))
register_task(RegressionTask("multitask", EMOTIONS))

__all__ = ["TASKS", "GenreTask", "RegressionTask", "Task", "get_task", "register_task", "task_losses",
           "task_outputs"]
