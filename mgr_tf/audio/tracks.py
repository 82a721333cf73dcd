"""What `mgr_tf.ingest` works on: its settings, the tracks to convert and the problems it reports.

Shared by the label readers (`mgr_tf.audio.labels`), the per-track conversion (`mgr_tf.audio.convert`),
the local run (`mgr_tf.audio.ingest`) and the Beam pipeline (`mgr_tf.audio.ingest_beam`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mgr_tf.models import encoder_inputs
from mgr_tf.tasks import get_task

TASKS = ("auto", "genre", "multitask")
AUTO = "auto"
CLIP_MODES = ("centre", "first", "pad")
FMA_SUBSETS = ("small", "medium", "large", "full")
GENRE_VOCABULARIES = ("auto", "fma", "labels")
AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg")
ENCODERS = encoder_inputs()  # the stored feature types (musicnn)
# The key of a track's label in manifest records, per label kind (`mgr_tf.data.layout.LABEL_KINDS`);
# the names are those of the manifests already written, so old roots resume.
LABEL_KEYS: dict[str, str] = {"genre": "genre", "emotion": "emotions"}
# The task that writes each label kind's sub-datasets (and names its manifest).
KIND_TASKS: dict[str, str] = {"genre": "genre", "emotion": "multitask"}


def label_kind(task: str) -> str:
    """The label kind ("genre" or "emotion") of a resolved ingest task ("genre" or "multitask").

    Args:
        task: the task, as named by `--task` (not "auto").
    """
    return get_task(task).label_kind


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one conversion (the clip length is `FeatureConfig.clip_seconds`).

    Args:
        task: genre writes fma_genre_spectrograms(+_beat) from genre labels; multitask writes
            multitask_dataset(+_beat) from regression targets; auto writes every kind the labels hold (a CSV
            with a genre column and target columns gives both, from one pass over the audio).
        clip: which part of each file becomes the clip. centre is the middle clip; first the first
            clip_seconds; pad the centre, zero-padding files shorter than the clip at the end.
        min_seconds: shortest file kept without padding, in seconds; files between this and the clip
            length give shorter arrays, shorter ones are skipped as too short. None means the clip
            length less 1 s (at most half the clip), as FMA's previews last 29.9..30 s.
        silence_db: a clip whose peak is at or below this level in dBFS is skipped as silent.
        test_fraction: share of the tracks put in the test split when the labels carry no split,
            drawn genre by genre with at least one test and one train track per genre of two or more;
            FMA's set.split is used when present.
        seed: seed of the stratified draw that decides the split.
        gz: write gzip-compressed .npy.gz samples instead of .npy.
        workers: decoding processes; 0 means one per CPU core, 1 decodes in the main process.
        fma_subset: with FMA tracks.csv, keep only tracks of this FMA subset (small, medium, large,
            full; each includes the smaller ones).
        genre_vocabulary: the genre names accepted. fma keeps FMA's 20 names and skips others as
            unknown genres; labels takes the label file's own names (any number, two or more) and
            writes them to genres.txt beside the data; auto is fma for FMA metadata (tracks.csv) and labels
            for every plain CSV, even one whose genres all happen to be FMA names.
        encoder: also store this pretrained encoder's input, computed from the same clip, beside each full
            fused array (`<id>.musicnn.npy`: 16 kHz, 96-band log-mel frames for `train --model musicnn`, which
            training then picks by default); auto = musicnn for a new root, as before for a root being resumed;
            none = no encoder input.
        targets: the columns of a plain CSV taken as regression targets (default: every numeric column whose
            values lie in [0, 1], or in the range --target-range declares).
        target_range: NAME=LO:HI per target stored on another scale: its values are mapped linearly from
            [LO, HI] to [0, 1] (the range is recorded in targets.json beside the label files).
    """

    task: str = field(default="auto", metadata={"choices": TASKS})
    clip: str = field(default="centre", metadata={"choices": CLIP_MODES})
    min_seconds: float | None = None
    silence_db: float = -60.0
    test_fraction: float = 0.2
    seed: int = 0
    gz: bool = False
    workers: int = 0
    fma_subset: str | None = field(default=None, metadata={"choices": FMA_SUBSETS})
    genre_vocabulary: str = field(default="auto", metadata={"choices": GENRE_VOCABULARIES})
    encoder: str | None = field(default=AUTO, metadata={"choices": (AUTO, "none", *ENCODERS)})
    targets: tuple[str, ...] = ()
    target_range: tuple[str, ...] = ()

    def __post_init__(self):
        if self.encoder == "none":
            object.__setattr__(self, "encoder", None)
        for name in ("task", "clip", "fma_subset", "genre_vocabulary", "encoder"):
            allowed, value = self.__dataclass_fields__[name].metadata["choices"], getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"{name.replace('_', ' ')} must be one of {allowed}, got {value!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test fraction must be in [0, 1), got {self.test_fraction}")
        if self.min_seconds is not None and not (math.isfinite(self.min_seconds) and self.min_seconds > 0):
            raise ValueError(f"min seconds must be positive, got {self.min_seconds}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        self.ranges()  # a malformed --target-range fails here, before any work

    def ranges(self) -> dict[str, tuple[float, float]]:
        """{target: (lo, hi)} of `target_range`.

        Raises:
            ValueError: an entry that is not NAME=LO:HI with LO < HI.
        """
        ranges = {}
        for entry in self.target_range:
            name, sep, span = entry.partition("=")
            lo, sep2, hi = span.partition(":")
            try:
                lo_value, hi_value = float(lo), float(hi)
            except ValueError:
                lo_value = hi_value = float("nan")
            if not (sep and sep2 and name and lo_value < hi_value):
                raise ValueError(f"target range must be NAME=LO:HI with LO < HI, got {entry!r}")
            ranges[name.strip()] = (lo_value, hi_value)
        return ranges


@dataclass(frozen=True)
class Track:
    """One audio file to convert.

    Args:
        track_id: the id used in file names and label files.
        path: the audio file (absolute).
        source: the path as reported (relative to AUDIO_DIR where possible).
        split: "train" or "test".
        label: a genre name (genre labels) or the values of the regression targets in [0, 1] (emotion labels,
            in the order of `LabelSet.targets`).
    """

    track_id: str
    path: str
    source: str
    split: str
    label: Any = None


@dataclass(frozen=True)
class Problem:
    """A file or label line left out, with its reason.

    Args:
        source: the audio file or "labels.csv:LINE".
        kind: short category counted in the summary (e.g. "corrupt", "too short").
        reason: what was wrong, in words.
    """

    source: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class LabelSet:
    """The tracks of the label files.

    Args:
        task: "genre" or "multitask".
        tracks: tracks to convert, with their split decided.
        problems: label-level problems (unknown genre, missing audio file, ...).
        vocabulary: the genre names of the label files (sorted) when they are the label set's own, () for FMA's 20.
        targets: the names of the regression targets (emotion labels), in the order of each track's values.
        ranges: {target: (lo, hi)} of targets mapped from another scale to [0, 1].
        notes: what the reader left out and why (columns that are not targets, ...), for the summary.
    """

    task: str
    tracks: tuple[Track, ...]
    problems: tuple[Problem, ...]
    vocabulary: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    ranges: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The label kind: "genre" or "emotion"."""
        return label_kind(self.task)
