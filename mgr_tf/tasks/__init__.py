"""The task registry: one place per task says what a model predicts and how it is trained and judged.

A task (keras-hub's idea of a task on top of a backbone) declares its outputs, the labels its data must
carry, its heads, losses, metrics, early-stopping monitor, how targets are decoded from dataset examples,
its serving outputs, its report metrics and how predictions are summarised. The data pipeline, the
models, training, export and predict ask the task instead of branching on its name.

Adding a task = one module with a `Task` subclass + one `register_task` line (see `tests/test_extension.py`).
"""

from __future__ import annotations

from mgr_tf.registry import Registry
from mgr_tf.genres import EMOTIONS
from mgr_tf.tasks.base import Task
from mgr_tf.tasks.emotion import EmotionTask
from mgr_tf.tasks.genre import GenreTask

TASKS: Registry[Task] = Registry("task")
register_task = TASKS.register
get_task = TASKS.lookup


def task_outputs(name: str) -> tuple[str, ...]:
    """The output names of a task's model (= the target keys of its data)."""
    return get_task(name).outputs


register_task(GenreTask())
for _emotion in EMOTIONS:
    register_task(EmotionTask(_emotion, (_emotion,)))
register_task(EmotionTask("multitask", EMOTIONS))

__all__ = ["TASKS", "EmotionTask", "GenreTask", "Task", "get_task", "register_task", "task_outputs"]
