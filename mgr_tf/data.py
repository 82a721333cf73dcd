"""The tf.data input pipeline: prepared TFDS records -> batched `(features, targets)`.

`make_dataset(config, split)` reads the `fma_spectrograms` TFDS dataset (built on first use from the
dataset root with `builder.download_and_prepare`), selects the bands (fused | mel | chroma), maps the
20 FMA genres to the published 10 classes (dropping the five unmapped genres), carves a
deterministic stratified validation split out of train, pads/crops to a fixed length (or buckets by
length with zero padding), and caches, shuffles (train only), batches and prefetches.

Where prepared data goes: `mgr_tf.paths.cache_home() / "tfds" / <fingerprint>`, where the
fingerprint is a short SHA-256 of the absolute root path, the sub-dataset, the label files' contents,
the names/sizes/mtimes of the sample files, the builder version and the skip-bad flag. Two roots (or
an edited root) never share prepared records, and a root is built once per sub-dataset.

Next to the TFDS records, two small JSON files are kept: `index-<config>.json` (track ids and labels
of each split, in record order, read once after the build) and `norm-<config>-....json` (per-band
mean/std of the train-minus-validation examples). The validation split is decided in Python once
from the index and applied in-graph with a lookup table; no per-example Python runs in the hot path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from mgr_tf import io as mgr_io
from mgr_tf.config import BAND_SLICES, FUSED_BANDS, DataConfig, task_outputs
from mgr_tf.genres import class_names, map_index_table
from mgr_tf.paths import cache_home, default_corpus_dir

SPLITS = ("train", "validation", "test")
# Strata for the validation split of emotion tasks: quantile bins of the target.
EMOTION_STRATA = 5
_ROLE_EXCLUDED, _ROLE_TRAIN, _ROLE_VAL = -1, 0, 1


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a report need to know about the data of a `DataConfig`.

    Args:
        class_names: genre class names (empty for emotion tasks).
        num_classes: number of genre classes (0 for emotion tasks).
        output_names: the target keys ("genre", or the emotion names).
        num_bands: bands per frame after band selection.
        frames: pad/crop length.
        norm_mean: per selected band, mean over all frames of the train-minus-validation examples.
        norm_std: per selected band, standard deviation over the same frames (floored at 1e-6).
        counts: examples per split ("train" is train minus validation; dropped genres excluded).
        test_labelled: False when the test split had no label file (targets are -1 there).
        root: the dataset root read.
        fingerprint: short hash naming the prepared records (see the module docstring).
        skipped: bad examples skipped in skip-bad mode ("name: reason").
    """

    class_names: tuple[str, ...]
    num_classes: int
    output_names: tuple[str, ...]
    num_bands: int
    frames: int
    norm_mean: np.ndarray = dataclasses.field(compare=False, repr=False)
    norm_std: np.ndarray = dataclasses.field(compare=False, repr=False)
    counts: dict = dataclasses.field(default_factory=dict)
    test_labelled: bool = True
    root: str = ""
    fingerprint: str = ""
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Prepared:
    builder: object
    root: Path
    fingerprint: str
    data_dir: Path
    index: dict  # split -> {"track_id": [...], "labelled": [...], label columns ...}
    skipped: tuple[str, ...]


_PREPARED: dict[tuple, _Prepared] = {}


def builder_config_name(config: DataConfig) -> str:
    """The TFDS config (genre_full, genre_beat, multitask_full, multitask_beat) a DataConfig reads."""
    return ("genre" if config.task == "genre" else "multitask") + ("_beat" if config.beat else "_full")


def resolve_root(config: DataConfig) -> Path:
    """The dataset root of `config`; the embedded synthetic corpus (generated once) when None.

    Args:
        config: the data config.
    """
    if config.data_dir is not None:
        return Path(config.data_dir).expanduser().resolve()
    root = default_corpus_dir(0)
    if not _corpus_complete(root):
        from mgr_tf.synth import generate_corpus

        print(f"mgr_tf: no --data-dir given; generating the embedded synthetic corpus in {root} "
              "(first use only)", file=sys.stderr, flush=True)
        generate_corpus(root, seed=0)
    return root.resolve()


def _corpus_complete(root: Path) -> bool:
    return all((root / sub / "train_labels.txt").is_file() and (root / sub / "test").is_dir()
               for sub in mgr_io.SUB_DATASETS)


def fingerprint(root: str | Path, config: DataConfig) -> str:
    """Short hash identifying the prepared records of `config` read from `root`.

    Covers the absolute root path, the sub-dataset, the label files' contents, the sample files'
    names, sizes and modification times, the builder version and `skip_bad`.

    Args:
        root: dataset root.
        config: the data config.
    """
    from mgr_tf.tfds_fma.fma_spectrograms.fma_spectrograms_dataset_builder import Builder

    root = Path(root).resolve()
    sub = mgr_io.sub_dataset_dir(root, config.sub_dataset)
    digest = hashlib.sha256()
    for part in (str(root), config.sub_dataset, str(Builder.VERSION), f"skip_bad={config.skip_bad}"):
        digest.update(part.encode() + b"\0")
    for split in mgr_io.SPLITS:
        labels = sub / f"{split}_labels.txt"
        digest.update(labels.read_bytes() if labels.is_file() else b"<no labels>")
        split_dir = sub / split
        if split_dir.is_dir():
            with os.scandir(split_dir) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    st = entry.stat()
                    digest.update(f"{split}/{entry.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def prepare(config: DataConfig) -> _Prepared:
    """Builds (once) the TFDS records of `config`'s sub-dataset and reads their index.

    Args:
        config: the data config.

    Raises:
        FileNotFoundError, ValueError: bad input (missing folders or files, bad label lines, bad
            sample files), naming the file and line.
    """
    import tensorflow_datasets as tfds

    from mgr_tf.tfds_fma.fma_spectrograms.fma_spectrograms_dataset_builder import Builder

    root = resolve_root(config)
    name = builder_config_name(config)
    fp = fingerprint(root, config)
    key = (fp, name)
    if key in _PREPARED:
        return _PREPARED[key]
    data_dir = cache_home() / "tfds" / fp
    builder = Builder(config=name, data_dir=str(data_dir), skip_bad=config.skip_bad)
    summary_path = data_dir / f"build_summary-{name}.json"
    if not builder.is_prepared():
        # Validate the label files before TFDS starts, so errors come out as one clear line.
        for split in mgr_io.SPLITS:
            mgr_io.list_split(root, config.sub_dataset, split, skip_bad=config.skip_bad)
        print(f"mgr_tf: preparing TFDS fma_spectrograms/{name} from {root} into {data_dir} (once)",
              file=sys.stderr, flush=True)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
        skipped = [str(s) for s in builder.skipped]
        summary = {"root": str(root), "config": name, "skipped": skipped,
                   "counts": {s: int(builder.info.splits[s].num_examples) for s in mgr_io.SPLITS}}
        _write_json(summary_path, summary)
        counts = ", ".join(f"{s} {n}" for s, n in summary["counts"].items())
        print(f"mgr_tf: prepared {name}: {counts} examples; {len(skipped)} bad example(s) skipped",
              file=sys.stderr, flush=True)
        for line in skipped:
            print(f"mgr_tf:   skipped {line}", file=sys.stderr)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"skipped": []}
    index = _read_index(builder, data_dir / f"index-{name}.json")
    prepared = _Prepared(builder, root, fp, data_dir, index, tuple(summary["skipped"]))
    _PREPARED[key] = prepared
    return prepared


def _write_json(path: Path, obj) -> None:
    """Writes JSON atomically, so a concurrent reader never sees half a file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(obj) + "\n")
    tmp.replace(path)


def _read_index(builder, path: Path) -> dict:
    """Track ids and labels of each split in record order (one pass, spectrograms not decoded)."""
    if path.is_file():
        return json.loads(path.read_text())
    import tensorflow_datasets as tfds

    index = {}
    for split in mgr_io.SPLITS:
        ds = builder.as_dataset(split=split, shuffle_files=False,
                                decoders={"spectrogram": tfds.decode.SkipDecoding()})
        ds = ds.map(lambda ex: {k: v for k, v in ex.items() if k != "spectrogram"})
        columns: dict[str, list] = {}
        for batch in ds.batch(4096).as_numpy_iterator():
            for k, v in batch.items():
                values = [x.decode() for x in v] if v.dtype == object else v.tolist()
                columns.setdefault(k, []).extend(values)
        index[split] = columns
    _write_json(path, index)
    return index


def _target_index(config: DataConfig, columns: dict) -> np.ndarray:
    """Per example of a split: the mapped genre class (-1 = dropped) or 0 for emotion tasks."""
    if config.task != "genre":
        return np.zeros(len(columns["track_id"]), np.int64)
    table = np.asarray(map_index_table(config.num_genres) + [-1])
    raw = np.asarray(columns["genre"], np.int64)
    return table[raw]  # raw -1 (unlabelled) picks the appended -1


def _strata(config: DataConfig, columns: dict) -> np.ndarray:
    if config.task == "genre":
        return _target_index(config, columns)
    emotion = "energy" if config.task == "multitask" else config.task
    values = np.asarray(columns[emotion], np.float64)
    edges = np.quantile(values, np.linspace(0, 1, EMOTION_STRATA + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def split_roles(config: DataConfig) -> dict[str, int]:
    """For each train track id: 0 = train, 1 = validation, -1 = excluded (dropped genre).

    Deterministic given (data, val_fraction, seed): the validation size is round(fraction * N);
    it is shared among strata (genre classes, or quantile bins of the emotion target) in proportion
    to their sizes by largest remainders, and each stratum's members are drawn with a seeded
    permutation of its sorted ids.

    Args:
        config: the data config.
    """
    columns = prepare(config).index["train"]
    ids = np.asarray(columns["track_id"])
    target = _target_index(config, columns)
    eligible = target >= 0
    roles = np.where(eligible, _ROLE_TRAIN, _ROLE_EXCLUDED)
    n = int(eligible.sum())
    n_val = min(int(round(config.val_fraction * n)), max(n - 1, 0))
    if n_val > 0:
        strata = _strata(config, columns)
        keys = sorted(set(strata[eligible].tolist()))
        sizes = np.array([int(((strata == k) & eligible).sum()) for k in keys])
        exact = n_val * sizes / n
        quota = np.floor(exact).astype(int)
        order = sorted(range(len(keys)), key=lambda i: (-(exact[i] - quota[i]), -sizes[i], i))
        for i in order[: n_val - int(quota.sum())]:
            quota[i] += 1
        rng = np.random.default_rng(config.seed)
        for k, q in zip(keys, quota):
            members = np.flatnonzero((strata == k) & eligible)
            members = members[np.argsort(ids[members], kind="stable")]
            chosen = members[rng.permutation(len(members))[:q]]
            roles[chosen] = _ROLE_VAL
    return dict(zip(ids.tolist(), roles.tolist()))


def split_ids(config: DataConfig, split: str) -> list[str]:
    """Track ids of a split in the order `make_dataset(config, split)` yields them (unshuffled).

    Args:
        config: the data config.
        split: "train", "validation" or "test".
    """
    _check_split(split)
    prepared = prepare(config)
    if split == "test":
        columns = prepared.index["test"]
        target = _target_index(config, columns)
        return [t for t, c in zip(columns["track_id"], target) if c >= 0 or config.task != "genre"
                or not _labelled(columns)]
    roles = split_roles(config)
    want = _ROLE_VAL if split == "validation" else _ROLE_TRAIN
    return [t for t in prepared.index["train"]["track_id"] if roles[t] == want]


def _labelled(columns: dict) -> bool:
    return bool(columns["labelled"]) and all(columns["labelled"])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _norm_stats(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (all 140) mean and std over every frame of the train-minus-validation examples."""
    prepared = prepare(config)
    key = f"{config.task}-{config.num_genres}-{config.val_fraction}-{config.seed}"
    path = prepared.data_dir / f"norm-{builder_config_name(config)}-{key}.json"
    if path.is_file():
        stats = json.loads(path.read_text())
        return np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    ds = _records(config, "train", cropped=False)

    def moments(features, _targets):
        x = tf.cast(features["spectrogram"], tf.float64)
        return tf.reduce_sum(x, 0), tf.reduce_sum(x * x, 0), tf.cast(tf.shape(x)[0], tf.float64)

    zeros = tf.zeros([FUSED_BANDS], tf.float64)
    total, total_sq, count = ds.map(moments, num_parallel_calls=tf.data.AUTOTUNE).reduce(
        (zeros, zeros, tf.constant(0.0, tf.float64)),
        lambda acc, m: (acc[0] + m[0], acc[1] + m[1], acc[2] + m[2]))
    count = max(float(count.numpy()), 1.0)
    mean = total.numpy() / count
    std = np.sqrt(np.maximum(total_sq.numpy() / count - mean**2, 0.0))
    std = np.maximum(std, 1e-6)
    _write_json(path, {"mean": mean.tolist(), "std": std.tolist()})
    return mean.astype(np.float32), std.astype(np.float32)


def dataset_info(config: DataConfig) -> DatasetInfo:
    """Class names, sizes and normalisation statistics of the data `config` reads.

    Builds the TFDS records on first use (see the module docstring).

    Args:
        config: the data config.
    """
    prepared = prepare(config)
    mean, std = _norm_stats(config)
    lo, hi = BAND_SLICES[config.features]
    roles = split_roles(config)
    counts = {
        "train": sum(r == _ROLE_TRAIN for r in roles.values()),
        "validation": sum(r == _ROLE_VAL for r in roles.values()),
        "test": len(split_ids(config, "test")),
    }
    names = class_names(config.num_genres) if config.task == "genre" else ()
    return DatasetInfo(
        class_names=tuple(names),
        num_classes=len(names),
        output_names=task_outputs(config.task),
        num_bands=hi - lo,
        frames=config.frames,
        norm_mean=mean[lo:hi],
        norm_std=std[lo:hi],
        counts=counts,
        test_labelled=_labelled(prepared.index["test"]),
        root=str(prepared.root),
        fingerprint=prepared.fingerprint,
        skipped=prepared.skipped,
    )



def _records(config: DataConfig, split: str, *, cropped: bool = True,
             with_ids: bool = False, bands: tuple[int, int] = (0, FUSED_BANDS)) -> tf.data.Dataset:
    """Unbatched `(features, targets)` of one split: filtered, mapped, band-selected, cropped."""
    prepared = prepare(config)
    tfds_split = "test" if split == "test" else "train"
    ds = prepared.builder.as_dataset(split=tfds_split, shuffle_files=False)
    genre_map = tf.constant(map_index_table(config.num_genres), tf.int32)

    if split != "test":
        roles = split_roles(config)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(roles), tf.string),
                                                tf.constant(list(roles.values()), tf.int32)),
            default_value=_ROLE_EXCLUDED)
        want = _ROLE_VAL if split == "validation" else _ROLE_TRAIN
        ds = ds.filter(lambda ex: tf.equal(table.lookup(ex["track_id"]), want))
    elif config.task == "genre":
        # Dropped genres leave the test split too; unlabelled examples (-1) stay.
        ds = ds.filter(lambda ex: tf.logical_or(
            ex["genre"] < 0, tf.gather(genre_map, tf.maximum(tf.cast(ex["genre"], tf.int32), 0)) >= 0))

    lo, hi = bands
    frames = config.frames
    outputs = task_outputs(config.task)

    def to_pair(ex):
        x = ex["spectrogram"][:, lo:hi]
        if cropped:
            x = x[:frames]
        features = {"spectrogram": x}
        if with_ids:
            features["track_id"] = ex["track_id"]
        if config.task == "genre":
            raw = tf.cast(ex["genre"], tf.int32)
            genre = tf.where(raw >= 0, tf.gather(genre_map, tf.maximum(raw, 0)), -1)
            targets = {"genre": genre}
        else:
            targets = {name: tf.reshape(tf.cast(ex[name], tf.float32), [1]) for name in outputs}
        return features, targets

    return ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def bucket_boundaries(config: DataConfig) -> list[int]:
    """Length boundaries (frames) of the buckets used with `variable_length`: 8 equal-width buckets.

    Args:
        config: the data config.
    """
    frames = config.frames
    return sorted({max(1, int(round(frames * i / 8))) for i in range(1, 8)})


def make_dataset(config: DataConfig, split: str, *, with_ids: bool = False,
                 shuffle: bool | None = None) -> tf.data.Dataset:
    """Batched `({"spectrogram": (batch, time, bands)}, targets)` for one split.

    Targets: `{"genre": int32 class}` (genre task; -1 on an unlabelled test split), `{X: float32
    (batch, 1)}` for emotion task X, or all three emotions for multitask (-1.0 when unlabelled).
    Spectrograms are padded with zero frames / cropped to `config.frames`; with
    `config.variable_length` they are cropped only, and batches are zero-padded to their longest
    example (bucketed by length for train, in order for evaluation splits).

    Args:
        config: the data config.
        split: "train", "validation" (carved from train) or "test".
        with_ids: add the "track_id" string to the features dict.
        shuffle: shuffle (seeded by config.seed, reshuffled each epoch); default True for train
            only. Evaluation splits keep the order of `split_ids`.

    Raises:
        FileNotFoundError, ValueError: bad input, naming the file and line.
    """
    _check_split(split)
    if shuffle is None:
        shuffle = split == "train"
    bands = BAND_SLICES[config.features]
    num_bands = bands[1] - bands[0]
    count = len(split_ids(config, split))
    length = config.frames if not config.variable_length else None
    # The split filter hides the size from tf.data; stating it lets Keras size epochs and progress bars.
    ds = _records(config, split, with_ids=with_ids, bands=bands).apply(
        tf.data.experimental.assert_cardinality(count))
    if length is not None:
        # Pad before the cache, so later epochs only shuffle and batch fixed-size examples.
        ds = ds.map(lambda features, targets: (
            {**features, "spectrogram": tf.ensure_shape(tf.pad(
                features["spectrogram"], [[0, length - tf.shape(features["spectrogram"])[0]], [0, 0]]),
                [length, num_bands])},
            targets), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(1, min(config.shuffle_buffer, count)), seed=config.seed,
                        reshuffle_each_iteration=True)
    padded = ({"spectrogram": [length, num_bands]} | ({"track_id": []} if with_ids else {}),
              {name: [] if config.task == "genre" else [1] for name in task_outputs(config.task)})
    if config.variable_length and split == "train":
        boundaries = bucket_boundaries(config)
        ds = ds.bucket_by_sequence_length(
            lambda features, _targets: tf.shape(features["spectrogram"])[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[config.batch_size] * (len(boundaries) + 1),
            padded_shapes=padded)
    elif length is not None:
        ds = ds.batch(config.batch_size)
    else:
        ds = ds.padded_batch(config.batch_size, padded_shapes=padded)
    return ds.prefetch(tf.data.AUTOTUNE)
