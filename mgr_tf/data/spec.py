"""The resolve step of a `DataConfig`: the task, feature type and sub-dataset it names, looked up once.

`DataConfig` holds plain values; `resolve` checks them against the registries (does this task exist, is this
feature type known and does it have a beat-synchronous copy) and works out what the data layer reads: the
sub-dataset folder, the pad/crop length and the patch length in effect. Every function of the data layer that
takes a config accepts either and resolves it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mgr_tf.core.config import BEAT_FRAMES, FULL_FRAMES, DataConfig
from mgr_tf.data.layout import sub_datasets
from mgr_tf.features.types import FeatureType
from mgr_tf.models import get_feature_type  # the registry with the pretrained families' stored inputs
from mgr_tf.tasks import Task, get_task


@dataclass(frozen=True)
class DataSpec:
    """A `DataConfig` resolved against the registries.

    Args:
        config: the config.
        task: its task.
        feature: its feature type.
        sub_dataset: the folder of the sub-dataset it reads (by the task's label kind and `beat`).
        frames: the pad/crop length in frames: `max_frames`, else 129 (beat-synchronous), else the feature
            type's full-clip length (musicnn: 1870), else 1293.
        patch: the patch length in effect: `patch_frames` when clips are longer, else None (whole clips).
    """

    config: DataConfig
    task: Task
    feature: FeatureType
    sub_dataset: str
    frames: int
    patch: int | None


def resolve(config: DataConfig | DataSpec) -> DataSpec:
    """The `DataSpec` of a config (a spec is returned as it is).

    Raises:
        ValueError: an unknown task or feature type (naming the registered ones), or a stored encoder input
            asked for beat-synchronous data.
    """
    if isinstance(config, DataSpec):
        return config
    task = get_task(config.task)
    feature = get_feature_type(config.features)
    if feature.stored and config.beat:
        raise ValueError(f"features {config.features!r} are stored for full clips only (ingest --encoder); "
                         "they have no beat-synchronous copy")
    frames = config.max_frames or (BEAT_FRAMES if config.beat else feature.frames or FULL_FRAMES)
    patch = config.patch_frames if config.patch_frames and config.patch_frames < frames else None
    return DataSpec(config, task, feature, sub_datasets(task.label_kind)[config.beat], frames, patch)
