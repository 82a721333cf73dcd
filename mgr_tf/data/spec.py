"""The resolve step of a `DataConfig`: the task, feature type and sub-dataset it names, looked up once.

`DataConfig` holds plain values; `resolve` checks them against the registries and the data (does this task
exist, or name one of the data's regression targets; is this feature type known and does it have a
beat-synchronous copy) and works out what the data layer reads: the task bound to the data's targets, the
sub-dataset folder, the pad/crop length and the patch length in effect. Every function of the data layer that
takes a config accepts either and resolves it here. It imports no TensorFlow: a command line resolves its flags
before it starts TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mgr_tf.core.config import BEAT_FRAMES, FULL_FRAMES, DataConfig
from mgr_tf.core.published import EMOTIONS
from mgr_tf.data.layout import sub_datasets
from mgr_tf.data.readers import regression_targets
from mgr_tf.features.types import FeatureType
from mgr_tf.models import get_feature_type  # the registry with the pretrained families' stored inputs
from mgr_tf.tasks import TASKS, Task, task_for


@dataclass(frozen=True)
class DataSpec:
    """A `DataConfig` resolved against the registries and the data.

    Args:
        config: the config.
        task: its task (a regression task bound to the targets it predicts).
        feature: its feature type.
        sub_dataset: the folder of the sub-dataset it reads (by the task's label kind and `beat`).
        frames: the pad/crop length in frames: `max_frames`, else 129 (beat-synchronous), else the feature
            type's full-clip length (musicnn: 1870), else 1293.
        patch: the patch length in effect: `patch_frames` when clips are longer, else None (whole clips).
        targets: the regression targets the data holds (the columns of its label CSV); () for genre tasks.
    """

    config: DataConfig
    task: Task
    feature: FeatureType
    sub_dataset: str
    frames: int
    patch: int | None
    targets: tuple[str, ...] = ()


def data_targets(config: DataConfig) -> tuple[str, ...]:
    """The regression targets of a config's root: its label CSV's columns (the embedded corpus: the published)."""
    if config.data_dir is None:
        return EMOTIONS
    return regression_targets(Path(config.data_dir).expanduser(), sub_datasets("emotion")[config.beat])


def resolve(config: DataConfig | DataSpec) -> DataSpec:
    """The `DataSpec` of a config (a spec is returned as it is).

    Raises:
        ValueError: an unknown task or feature type (naming the registered ones and the data's targets), a
            target the data lacks, or a stored encoder input asked for beat-synchronous data.
        FileNotFoundError: a regression task on a root without its label file.
    """
    if isinstance(config, DataSpec):
        return config
    registered = TASKS.get(config.task)
    regression = registered is None or registered.label_kind == "emotion"
    targets = data_targets(config) if regression else ()
    task = task_for(config.task, targets, config.targets)
    feature = get_feature_type(config.features)
    if feature.stored and config.beat:
        raise ValueError(f"features {config.features!r} are stored for full clips only (ingest --encoder); "
                         "they have no beat-synchronous copy")
    frames = config.max_frames or (BEAT_FRAMES if config.beat else feature.frames or FULL_FRAMES)
    patch = config.patch_frames if config.patch_frames and config.patch_frames < frames else None
    return DataSpec(config, task, feature, sub_datasets(task.label_kind)[config.beat], frames, patch, targets)
