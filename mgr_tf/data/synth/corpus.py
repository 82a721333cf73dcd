"""The embedded default corpus: synthesised music run through the project's own feature extractor.

`generate_corpus` writes all four sub-datasets of the published layout (shared reference,
section 1) from audio synthesised in NumPy (`mgr_tf.data.synth.music`):

* genre clips: each of the 20 FMA genres has a `Style` (`mgr_tf.data.synth.styles`); genres that the
  published 20 -> 10 mapping merges differ only in details, while the ten mapped classes differ clearly.
* emotion clips: each clip draws continuous "knobs" (tempo, mode, loudness, percussion density,
  brightness, timing regularity, register); valence, energy and danceability are fixed functions
  of the knobs plus small noise, spread over most of [0, 1].

The audio is never stored: it goes through `mgr_tf.features.clips.batch_clip_features`, the features of
the converter and of `mgr_tf.predict`, for the full and the ``_beat`` sets. The test split is the
stratified draw of `mgr_tf.data.splits.stratified_split` (a fifth of each genre, at least one clip).
Everything is deterministic from the seed; equal arguments give byte-identical files.

Command line: ``python -m mgr_tf.synth --out DIR [--seed S] [--clips N] [--duration SEC]``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgr_tf.core.cli import Progress
from mgr_tf.core.config import FeatureConfig
from mgr_tf.core.published import GENRES_20
from mgr_tf.data import layout
from mgr_tf.data.splits import stratified_split
from mgr_tf.data.synth import DEFAULT_CLIPS, DEFAULT_DURATION
from mgr_tf.data.synth.music import synthesize
from mgr_tf.data.synth.styles import EMOTION_STYLES, STYLES, Knobs, emotion_knobs, emotion_targets, genre_knobs
from mgr_tf.features.clips import batch_clip_features

TEST_FRACTION = 0.2
BATCH = 2  # clips per feature call; measured fastest on CPU (larger batches fall out of cache)

# The names `mgr_tf.bench.features_bench` imports from here.
_genre_knobs = genre_knobs
__all__ = ["DEFAULT_CLIPS", "DEFAULT_DURATION", "STYLES", "emotion_targets", "generate_corpus", "synthesize"]


@dataclass(frozen=True)
class _Clip:
    track_id: int
    split: str
    style: str
    knobs: Knobs
    seed: tuple[int, ...]
    genre: str | None = None
    targets: tuple[float, float, float] | None = None


def _split_counts(total: int, groups: int) -> list[int]:
    return [total // groups + (1 if g < total % groups else 0) for g in range(groups)]


def _with_splits(clips: list[_Clip], strata: list[str], seed: int) -> list[_Clip]:
    """The clips with their split: a stratified fifth in test, at least one clip per stratum."""
    test = stratified_split([str(c.track_id) for c in clips], strata, TEST_FRACTION, seed, min_per_stratum=1)
    return [dataclasses.replace(c, split="test" if t else "train") for c, t in zip(clips, test)]


def _plan(seed: int, clips: int) -> tuple[list[_Clip], list[_Clip]]:
    """Decides every clip (ids, split, style, knobs, targets) before any audio is made."""
    rng = np.random.default_rng([seed, 0])
    ids = rng.choice(np.arange(100000, 1000000), size=2 * clips, replace=False)
    genre_ids, emo_ids = ids[:clips], ids[clips:]

    genre_clips = []
    i = 0
    for g, count in enumerate(_split_counts(clips, len(GENRES_20))):
        genre = GENRES_20[g]
        for _ in range(count):
            clip_seed = (seed, 1, i)
            knobs = genre_knobs(STYLES[genre], np.random.default_rng(clip_seed))
            genre_clips.append(_Clip(int(genre_ids[i]), "", genre, knobs, clip_seed, genre=genre))
            i += 1
    order = rng.permutation(len(genre_clips))
    genre_clips = [genre_clips[o] for o in order]

    emo_clips = []
    for i in range(clips):
        clip_seed = (seed, 2, i)
        crng = np.random.default_rng(clip_seed)
        style = EMOTION_STYLES[int(crng.integers(len(EMOTION_STYLES)))]
        knobs = emotion_knobs(crng)
        targets = emotion_targets(knobs, crng)
        emo_clips.append(_Clip(int(emo_ids[i]), "", style, knobs, clip_seed, targets=targets))
    return (_with_splits(genre_clips, [c.genre for c in genre_clips], seed),
            _with_splits(emo_clips, ["all"] * len(emo_clips), seed))


def generate_corpus(out_dir: str | Path, *, seed: int = 0, clips: int = DEFAULT_CLIPS,
                    duration: float = DEFAULT_DURATION, withhold_test_labels: bool = False,
                    feature_config: FeatureConfig = FeatureConfig(), progress: bool = True) -> dict:
    """Writes the synthetic corpus (all four sub-datasets) under `out_dir`.

    Args:
        out_dir: dataset root (created; existing files of the same names are overwritten).
        seed: randomness seed; equal arguments give byte-identical files.
        clips: clips in the genre set and, separately, in the multitask set (>= 40, so that every
            genre has a train and a test clip).
        duration: seconds per clip (30 s = 1292 frames, as the published data).
        withhold_test_labels: write no multitask test_labels.txt (as the original release).
        feature_config: feature settings (must give 140 fused bands to match the layout).
        progress: progress on stderr (a bar on a terminal, a few lines in a log).

    Returns:
        A summary: {"root", "seed", "clips", "duration", "counts": {sub_dataset: {split: n}},
        "frames": {"full": T, "beat": [min, max]}, "seconds"}.
    """
    if clips < 2 * len(GENRES_20):
        raise ValueError(f"clips must be at least {2 * len(GENRES_20)} (a train and a test clip per genre), "
                         f"got {clips}")
    if duration < 1.0:
        raise ValueError(f"duration must be at least 1 second, got {duration}")
    start = time.perf_counter()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    layout.write_feature_config(root, feature_config)
    sr = feature_config.sample_rate
    genre_clips, emo_clips = _plan(seed, clips)
    beat_lengths: list[int] = []
    full_frames = 0

    with Progress(len(genre_clips) + len(emo_clips), "synth", "clips", enabled=progress) as bar:
        for clip_list, (full_name, beat_name) in ((genre_clips, layout.sub_datasets("genre")),
                                                  (emo_clips, layout.sub_datasets("emotion"))):
            for b in range(0, len(clip_list), BATCH):
                batch = clip_list[b:b + BATCH]
                audio = np.stack([synthesize(STYLES[c.style], c.knobs, duration, sr,
                                             np.random.default_rng(c.seed + (1,))) for c in batch])
                for j, (clip, feats) in enumerate(zip(batch, batch_clip_features(audio, feature_config))):
                    gz = (b + j) % 2 == 0
                    layout.write_sample(root / full_name / clip.split, clip.track_id, feats.full.T, gz)
                    layout.write_sample(root / beat_name / clip.split, clip.track_id, feats.beat.T, gz)
                    beat_lengths.append(feats.beat.shape[0])
                    full_frames = feats.full.shape[0]
                bar.update(len(batch))

    counts: dict[str, dict[str, int]] = {}
    for split in layout.SPLITS:
        rows = [(c.track_id, c.genre) for c in genre_clips if c.split == split]
        for name in layout.sub_datasets("genre"):
            layout.write_genre_labels(root / name / layout.labels_name(split), rows)
            counts.setdefault(name, {})[split] = len(rows)
        rows = [(c.track_id, *c.targets) for c in emo_clips if c.split == split]
        for name in layout.sub_datasets("emotion"):
            if not (split == "test" and withhold_test_labels):
                layout.write_emotion_labels(root / name / layout.labels_name(split), rows)
            counts.setdefault(name, {})[split] = len(rows)
    return {"root": str(root), "seed": seed, "clips": clips, "duration": duration, "counts": counts,
            "frames": {"full": full_frames, "beat": [min(beat_lengths), max(beat_lengths)]},
            "seconds": round(time.perf_counter() - start, 2)}
