"""Input pipeline throughput: `mgr_tf.data.make_dataset` vs a per-file NumPy loader.

The baseline is how published code on this data loads it: for every example, `np.load` the
`.npy` file, transpose to (time, bands), zero-pad/crop in Python and stack a batch. Both read the
same files (the train split of the genre task, in the same order) with the same batch size, in one
run. Epoch 1 of `make_dataset` reads the prepared TFRecords and fills the cache; epoch 2 is served
from the cache. Target: >= 5x the baseline on full spectrograms after the first epoch.
"""

from __future__ import annotations

import gzip
import sys
import time

import numpy as np

from mgr_tf import data
from mgr_tf.bench import Row
from mgr_tf.core.config import DataConfig, FeatureConfig
from mgr_tf.core.paths import cache_home
from mgr_tf.core.published import GENRES_20
from mgr_tf.data import readers as mgr_io
from mgr_tf.data.synth.corpus import generate_corpus

BASELINE = "per-file NumPy loader (np.load, transpose, pad in Python)"
BATCH = 32


def _corpus(quick: bool):
    clips, duration = (40, 10.0) if quick else (120, 30.0)
    root = cache_home() / "bench" / f"data-corpus-{clips}x{duration:g}s"
    if not (root / "multitask_dataset_beat" / "train_labels.txt").is_file():
        print(f"data bench: generating a {clips}-clip, {duration:g} s synthetic corpus in {root} (once)",
              file=sys.stderr, flush=True)
        generate_corpus(root, seed=0, clips=clips, duration=duration, progress=True)
    return root


def _np_load(path) -> np.ndarray:
    """A plain `np.load` (through gzip for `.npy.gz`), without the checks of `mgr_tf.io`."""
    if str(path).endswith(".gz"):
        with gzip.open(path) as fh:
            return np.load(fh)
    return np.load(path)


def _numpy_epoch(paths, labels, frames: int, bands: int) -> int:
    n = 0
    for start in range(0, len(paths), BATCH):
        batch = np.zeros((min(BATCH, len(paths) - start), frames, bands), np.float32)
        for row, path in enumerate(paths[start:start + BATCH]):
            x = _np_load(path).T[:frames]
            batch[row, : len(x)] = x
        y = np.asarray(labels[start:start + BATCH], np.int32)
        n += min(len(batch), int(y.size))
    return n


def _tf_epoch(ds) -> int:
    n = 0
    for features, _targets in ds:
        n += int(features["spectrogram"].shape[0])
    return n


def run(quick: bool) -> list[Row]:
    """Measures examples/s of both loaders, epochs 1 and 2, on full and beat spectrograms.

    Args:
        quick: a smaller corpus (40 clips of 10 s) for a fast check.
    """
    root = _corpus(quick)
    rows: list[Row] = []
    for beat in (False, True):
        cfg = DataConfig(data_dir=str(root), beat=beat, num_genres=20, val_fraction=0.0, features="fused",
                         batch_size=BATCH)
        data.dataset_info(cfg)  # prepare the TFRecords outside the timing
        spec = data.resolve(cfg)
        ids = data.split_ids(cfg, "train")
        listing = {e.track_id: e for e in mgr_io.list_split(root, spec.sub_dataset, "train").examples}
        paths = [listing[t].path for t in ids]
        labels = [GENRES_20.index(listing[t].genre) for t in ids]
        ds = data.make_dataset(cfg, "train")  # the training path: cached, shuffled, batched
        name = "beat" if beat else "full"
        for epoch in (1, 2):
            start = time.perf_counter()
            n_tf = _tf_epoch(ds)
            t_tf = time.perf_counter() - start
            start = time.perf_counter()
            n_np = _numpy_epoch(paths, labels, spec.frames, spec.feature.bands(FeatureConfig()))
            t_np = time.perf_counter() - start
            assert n_tf == n_np == len(ids)
            tf_rate, np_rate = n_tf / t_tf, n_np / t_np
            rows.append(Row(
                bench="data", case=f"{name}, batch {BATCH}, epoch {epoch}, {len(ids)} clips",
                value=round(tf_rate, 1), unit="examples/s", ratio=round(tf_rate / np_rate, 2),
                baseline=BASELINE,
                target=">= 5x after the first epoch" if (not beat and epoch == 2) else "",
                extra={"numpy_examples_per_s": round(np_rate, 1), "frames": spec.frames}))
    return rows
