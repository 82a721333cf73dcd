"""Configuration dataclasses shared by the converter, the data pipeline, training and serving.

Feature parameters live in exactly one object (`FeatureConfig`) so that the dataset converter,
the synthetic corpus, the data pipeline and the serving signature all compute the same features.
Every config is a frozen dataclass; `to_dict` / `from_dict` give the `config.json` written next to
every run and export.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar


T = TypeVar("T")

# Rows 0..127 of a stored (fused) array are log-mel, rows 128..139 chroma (reference section 1); the
# feature types derived from it are registered in mgr_tf.feature_types.
FUSED_BANDS = 140
FULL_FRAMES = 1293  # padding length used by published code on the full spectrograms
BEAT_FRAMES = 129  # ... and on the beat-synchronous ones


@dataclass(frozen=True)
class FeatureConfig:
    """Spectrogram settings of the published data (librosa defaults where unstated).

    Args:
        sample_rate: audio rate in Hz; audio is resampled to it, mono.
        n_fft: STFT window length (Hann window, centred frames, zero padding).
        hop_length: STFT hop in samples.
        n_mels: mel bands (Slaney mel scale and area normalisation, as librosa).
        n_chroma: chroma bins, C first.
        fmin: lowest mel frequency in Hz.
        fmax: highest mel frequency in Hz; None = sample_rate / 2.
        top_db: dynamic range kept by `power_to_db` (ref = 1.0, amin = 1e-10).
        clip_seconds: clip length that a dataset example covers.
        n_mfcc: MFCC coefficients of the mfcc feature type (computed from the log-mel rows).
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    n_chroma: int = 12
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    clip_seconds: float = 30.0
    n_mfcc: int = 20

    @property
    def num_bands(self) -> int:
        return self.n_mels + self.n_chroma


@dataclass(frozen=True)
class DataConfig:
    """What `mgr_tf.data.make_dataset` reads and how it batches it.

    Args:
        data_dir: dataset root in the layout of the reference (four sub-datasets); None = the
            embedded synthetic corpus, generated on first use.
        task: genre, valence, energy, danceability or multitask.
        features: the model input (a name in `mgr_tf.feature_types`): fused (140), mel (128), chroma (12),
            mfcc, or an encoder input stored by ingest --encoder (musicnn).
        beat: read the beat-synchronous sub-datasets.
        num_genres: 10 (published 20 -> 10 mapping, dropped genres removed) or 20.
        val_fraction: share of the train split held out (stratified, deterministic) for validation.
        seed: seed of the validation split and the shuffle.
        batch_size: examples per batch.
        max_frames: pad/crop length; None = 1293 (full) or 129 (beat), or the feature type's own full-clip
            length (musicnn: 1870).
        variable_length: batch by length with zero padding (for LSTM, which masks all-zero frames)
            instead of pad/crop to max_frames.
        skip_bad: skip bad examples (counted and named in the build summary) instead of failing.
        shuffle_buffer: shuffle buffer size for the train split.
        n_mfcc: MFCC coefficients when features is mfcc.
        cv_folds: cross-validation: pool train and the labelled test split, cut them into this many
            stratified folds (0 = no cross-validation; `python -m mgr_tf.cv` sets it).
        cv_fold: the fold used as the test split.
        patch_frames: train on random crops of this many frames, drawn afresh each epoch; evaluation,
            predict and the SavedModel average the model over the windows of the whole clip (hop = half a
            patch) in the graph. 0 (or None) = train on whole clips; ignored when the clips are not longer
            than a patch (beat-synchronous data).
        mixup: training-only mixup (Zhang et al., ICLR 2018) with a Beta(mixup, mixup) mixing weight per batch:
            each batch is mixed with a shuffled copy of itself and both label sets are scored, weighted by the
            mixing weight (so class labels need no one-hot); 0 = off.
    """

    data_dir: str | None = None
    task: str = "genre"
    features: str = "mfcc"
    beat: bool = False
    num_genres: int = 10
    val_fraction: float = 0.15
    seed: int = 0
    batch_size: int = 32
    max_frames: int | None = None
    variable_length: bool = False
    skip_bad: bool = False
    shuffle_buffer: int = 1024
    n_mfcc: int = 20
    cv_folds: int = 0
    cv_fold: int = 0
    patch_frames: int | None = 256
    mixup: float = 0.0

    def __post_init__(self):
        from mgr_tf.tasks import get_task

        get_task(self.task)  # ValueError naming the registered tasks
        from mgr_tf.feature_types import get_feature_type

        if get_feature_type(self.features).stored and self.beat:  # (ValueError naming the registered types)
            raise ValueError(f"features {self.features!r} are stored for full clips only (ingest --encoder); "
                             "they have no beat-synchronous copy")
        if self.num_genres not in (10, 20):
            raise ValueError(f"num_genres must be 10 or 20, got {self.num_genres}")
        if self.patch_frames is not None and self.patch_frames < 0:
            raise ValueError(f"patch_frames must be positive (0 = whole clips), got {self.patch_frames}")
        if self.cv_folds and not (self.cv_folds >= 2 and 0 <= self.cv_fold < self.cv_folds):
            raise ValueError(f"cross-validation needs cv_folds >= 2 and 0 <= cv_fold < cv_folds, got "
                             f"{self.cv_folds} and {self.cv_fold}")
        if self.mixup < 0:
            raise ValueError(f"mixup must be >= 0 (0 = off), got {self.mixup}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def frames(self) -> int:
        """The pad/crop length in frames."""
        if self.max_frames:
            return self.max_frames
        if self.beat:
            return BEAT_FRAMES
        from mgr_tf.feature_types import get_feature_type

        return get_feature_type(self.features).frames or FULL_FRAMES

    @property
    def patch(self) -> int | None:
        """The patch length in effect: `patch_frames` when clips are longer, else None (whole clips)."""
        return self.patch_frames if self.patch_frames and self.patch_frames < self.frames else None

    @property
    def num_bands(self) -> int:
        from mgr_tf.feature_types import num_bands

        return num_bands(self.features)

    @property
    def sub_dataset(self) -> str:
        """Folder name of the sub-dataset this task reads."""
        from mgr_tf.data.layout import sub_datasets
        from mgr_tf.tasks import get_task

        return sub_datasets(get_task(self.task).label_kind)[self.beat]


def to_dict(config: Any) -> dict:
    """A dataclass config (possibly nested) as a JSON-ready dict."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def from_dict(cls: type[T], data: dict) -> T:
    """Builds `cls` from a dict, rejecting unknown keys with a clear message."""
    if hasattr(cls, "from_dict"):
        return cls.from_dict(data)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    kwargs = {}
    for key, value in data.items():
        default = names[key].default
        if isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def write_json(path: str | Path, data: Any) -> None:
    """Writes `data` as indented JSON, atomically (creating parent folders).

    The text goes to a temporary file beside `path` that is then renamed over it, so a concurrent
    reader (another process preparing the same records, a resumed run) never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
