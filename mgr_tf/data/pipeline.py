"""The tf.data input pipeline: prepared TFDS records -> batched `(features, targets)`.

`make_dataset(config, split)` reads the `fma_spectrograms` TFDS dataset (built on first use from the
dataset root with `builder.download_and_prepare`), selects the bands (fused | mel | chroma), maps the
20 FMA genres to the published 10 classes (dropping the five unmapped genres), carves a
deterministic stratified validation split out of train, pads/crops to a fixed length (or buckets by
length with zero padding), and caches, shuffles (train only), batches and prefetches. The records
come from `mgr_tf.data.prepare` (built once per root).

Next to the records, `norm-<config>-....json` keeps the per-band mean/std of the train-minus-validation
examples. The validation split (and the cross-validation folds) is decided in Python once from the
index and applied in-graph with a lookup table; no per-example Python runs in the hot path.

With `shard=(index, count)` (one input pipeline of a distributed run, `mgr_tf.training.distributed`) a pipeline
reads only its contiguous `count`-th of the records of each TFDS split (`train[a:b]`), so each worker reads its
own part of the files; its shuffle, patch crops and mixup draw from their own seeded streams.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mgr_tf.core.config import DataConfig, FeatureConfig
from mgr_tf.core.io import write_json
from mgr_tf.core.published import GENRES_20, class_names, map_index_table
from mgr_tf.data.prepare import builder_config_name, prepare
from mgr_tf.data.spec import DataSpec, resolve
from mgr_tf.data.splits import stratified_folds, stratified_subset

SPLITS = ("train", "validation", "test")
_ROLE_EXCLUDED, _ROLE_TRAIN, _ROLE_VAL, _ROLE_TEST = -1, 0, 1, 2
_SPLIT_ROLE = {"train": _ROLE_TRAIN, "validation": _ROLE_VAL, "test": _ROLE_TEST}
# Seed offset of shard i's random streams (shuffle, crops, mixup): i * this, so shard 0 is the unsharded pipeline.
SHARD_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a report need to know about the data of a `DataConfig`.

    Args:
        class_names: class names (the genre classes; empty for regression tasks).
        num_classes: number of classes (0 for regression tasks).
        output_names: the target keys ("genre", or the emotion names).
        num_bands: bands per frame after band selection.
        frames: pad/crop length of the examples.
        model_frames: the input length the model is built for (the patch length with patch training).
        window_hop: with patch training, the hop between the windows the model averages over; else None.
        db_bands: leading bands of the feature type that are in dB (for random-gain augmentation).
        norm_mean: per selected band, mean over all frames of the train-minus-validation examples.
        norm_std: per selected band, standard deviation over the same frames (floored at 1e-6).
        counts: examples per split ("train" is train minus validation; dropped genres excluded).
        test_labelled: False when the test split had no label file (targets are -1 there).
        root: the dataset root read.
        fingerprint: short hash naming the prepared records (see the module docstring).
        skipped: bad examples skipped in skip-bad mode ("name: reason").
        vocabulary: the raw genre names stored with the data (FMA's 20, or the root's genres.txt).
        feature_config: the settings the arrays were made with (the root's features.json, else the
            published ones).
    """

    class_names: tuple[str, ...]
    num_classes: int
    output_names: tuple[str, ...]
    num_bands: int
    frames: int
    model_frames: int
    window_hop: int | None
    db_bands: int
    norm_mean: np.ndarray = dataclasses.field(compare=False, repr=False)
    norm_std: np.ndarray = dataclasses.field(compare=False, repr=False)
    counts: dict = dataclasses.field(default_factory=dict)
    test_labelled: bool = True
    root: str = ""
    fingerprint: str = ""
    skipped: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()
    feature_config: FeatureConfig = FeatureConfig()


def label_map(config: DataConfig | DataSpec, vocabulary: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray | None]:
    """(class names, raw label index -> class index with -1 = dropped) of a config's task.

    The published 20 -> 10 mapping (or all 20 with num_genres=20) applies when the vocabulary is FMA's
    20 names; any other vocabulary is used as it is, one class per name.
    """
    spec = resolve(config)
    if not spec.task.classification:
        return (), None
    if tuple(vocabulary) == GENRES_20:
        return class_names(spec.config.num_genres), np.asarray(map_index_table(spec.config.num_genres), np.int64)
    return tuple(vocabulary), np.arange(len(vocabulary), dtype=np.int64)


def _target_index(spec: DataSpec, columns: dict) -> np.ndarray:
    """Per example of a split: its class (-1 = dropped or unlabelled), or 0 for regression tasks."""
    return spec.task.class_index(columns, label_map(spec, prepare(spec).vocabulary)[1])


def _strata(spec: DataSpec, columns: dict) -> np.ndarray:
    return spec.task.strata(columns, label_map(spec, prepare(spec).vocabulary)[1])


def _pooled_columns(config: DataConfig | DataSpec) -> dict:
    """The label columns whose examples the roles cover: train, plus the labelled test split under CV."""
    spec = resolve(config)
    index = prepare(spec).index
    if not spec.config.cv_folds or not _labelled(index["test"]):
        return index["train"]
    return {key: list(index["train"][key]) + list(index["test"][key]) for key in index["train"]}


def split_roles(config: DataConfig | DataSpec) -> dict[str, int]:
    """For each track id: 0 = train, 1 = validation, 2 = test (cross-validation only), -1 = excluded.

    Without cross-validation the ids are the train split's. Deterministic given (data, val_fraction,
    seed): the validation size is round(fraction * N); it is shared among strata (classes, or quantile
    bins of an emotion target) in proportion to their sizes by largest remainders, and each stratum's
    members are drawn with a seeded permutation of its sorted ids (`mgr_tf.data.splits`).

    With `cv_folds` = k, train and the labelled test split are pooled, cut into k stratified folds;
    fold `cv_fold` is the test split and the validation split is carved, as above, from the others.

    Args:
        config: the data config.
    """
    spec = resolve(config)
    config = spec.config
    columns = _pooled_columns(spec)
    ids = np.asarray(columns["track_id"])
    eligible = _target_index(spec, columns) >= 0
    roles = np.where(eligible, _ROLE_TRAIN, _ROLE_EXCLUDED)
    strata = _strata(spec, columns)
    if config.cv_folds:
        folds = stratified_folds(ids[eligible].tolist(), strata[eligible].tolist(), config.cv_folds, config.seed)
        test = np.flatnonzero(eligible)[np.asarray(folds) == config.cv_fold]
        roles[test] = _ROLE_TEST
    pool = roles == _ROLE_TRAIN
    n = int(pool.sum())
    n_val = min(int(round(config.val_fraction * n)), max(n - 1, 0))
    if n_val > 0:
        chosen = stratified_subset(ids[pool].tolist(), strata[pool].tolist(), n_val, config.seed)
        roles[np.flatnonzero(pool)[np.asarray(chosen, dtype=bool)]] = _ROLE_VAL
    if config.train_fraction < 1.0:
        pool = roles == _ROLE_TRAIN
        keep = max(1, int(round(config.train_fraction * pool.sum())))
        chosen = np.asarray(stratified_subset(ids[pool].tolist(), strata[pool].tolist(), keep, config.seed), bool)
        roles[np.flatnonzero(pool)[~chosen]] = _ROLE_EXCLUDED
    return dict(zip(ids.tolist(), roles.tolist()))


def split_ids(config: DataConfig | DataSpec, split: str, *, shard: tuple[int, int] | None = None) -> list[str]:
    """Track ids of a split in the order `make_dataset(config, split)` yields them (unshuffled).

    Args:
        config: the data config.
        split: "train", "validation" or "test".
        shard: (index, count): only the ids in that shard's records (see the module docstring).
    """
    _check_split(split)
    spec = resolve(config)
    prepared = prepare(spec)
    if split == "test" and not spec.config.cv_folds:
        columns = prepared.index["test"]
        target = _target_index(spec, columns)
        ids = [t for t, c in zip(columns["track_id"], target) if c >= 0 or not _labelled(columns)]
    else:
        roles = split_roles(spec)
        want = _SPLIT_ROLE[split]
        ids = [t for t in _pooled_columns(spec)["track_id"] if roles[t] == want]
    if shard is None:
        return ids
    mine = {t for source, (start, stop) in _sources(spec, split, shard)
            for t in prepared.index[source]["track_id"][start:stop]}
    return [t for t in ids if t in mine]


def _sources(spec: DataSpec, split: str, shard: tuple[int, int] | None = None) -> list[tuple[str, tuple[int, int]]]:
    """[(TFDS split, (first, end) record)] read for `split`, in order: all records, or a shard's even part."""
    index = prepare(spec).index
    if spec.config.cv_folds:  # the pooled examples of `_pooled_columns`, in the same order
        names = ["train", "test"] if _labelled(index["test"]) else ["train"]
    else:
        names = ["test" if split == "test" else "train"]
    out = []
    for name in names:
        n = len(index[name]["track_id"])
        if shard is None:
            out.append((name, (0, n)))
        else:
            i, count = shard
            if not 0 <= i < count:
                raise ValueError(f"shard index must be in [0, {count}), got {i}")
            out.append((name, (n * i // count, n * (i + 1) // count)))
    return out


def _labelled(columns: dict) -> bool:
    return bool(columns["labelled"]) and all(columns["labelled"])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _norm_stats(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std of the config's feature type over every frame of train minus validation."""
    config = spec.config
    prepared = prepare(spec)
    key = (f"{config.task}-{config.features}{config.n_mfcc if config.features == 'mfcc' else ''}-"
           f"{config.num_genres}-{config.val_fraction}-{config.seed}-cv{config.cv_folds}.{config.cv_fold}"
           f"{'' if config.train_fraction == 1.0 else f'-f{config.train_fraction}'}"
           f"{'-' + ','.join(config.targets) if config.targets else ''}")  # the first target stratifies the split
    path = prepared.data_dir / f"norm-{builder_config_name(spec)}-{key}.json"
    if path.is_file():
        stats = json.loads(path.read_text())
        return np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    ds = _records(spec, "train", cropped=False)

    def moments(features, _targets):
        x = tf.cast(features["spectrogram"], tf.float64)
        return tf.reduce_sum(x, 0), tf.reduce_sum(x * x, 0), tf.cast(tf.shape(x)[0], tf.float64)

    zeros = tf.zeros([spec.feature.bands(prepared.feature_config)], tf.float64)
    total, total_sq, count = ds.map(moments, num_parallel_calls=tf.data.AUTOTUNE).reduce(
        (zeros, zeros, tf.constant(0.0, tf.float64)),
        lambda acc, m: (acc[0] + m[0], acc[1] + m[1], acc[2] + m[2]))
    count = max(float(count.numpy()), 1.0)
    mean = total.numpy() / count
    std = np.sqrt(np.maximum(total_sq.numpy() / count - mean**2, 0.0))
    std = np.maximum(std, 1e-6)
    write_json(path, {"mean": mean.tolist(), "std": std.tolist()})
    return mean.astype(np.float32), std.astype(np.float32)


def dataset_info(config: DataConfig | DataSpec) -> DatasetInfo:
    """Class names, sizes and normalisation statistics of the data `config` reads.

    Builds the TFDS records on first use (see the module docstring).

    Args:
        config: the data config.
    """
    spec = resolve(config)
    config = spec.config
    prepared = prepare(spec)
    mean, std = _norm_stats(spec)
    names, _ = label_map(spec, prepared.vocabulary)
    roles = split_roles(spec)
    counts = {
        "train": sum(r == _ROLE_TRAIN for r in roles.values()),
        "validation": sum(r == _ROLE_VAL for r in roles.values()),
        "test": len(split_ids(spec, "test")),
    }
    return DatasetInfo(
        class_names=tuple(names),
        num_classes=len(names),
        output_names=spec.task.outputs,
        num_bands=len(mean),
        frames=spec.frames,
        model_frames=spec.patch or spec.frames,
        window_hop=max(1, spec.patch // 2) if spec.patch else None,
        db_bands=spec.feature.db_bands(prepared.feature_config),
        norm_mean=mean,
        norm_std=std,
        counts=counts,
        test_labelled=bool(config.cv_folds) or _labelled(prepared.index["test"]),
        root=str(prepared.root),
        fingerprint=prepared.fingerprint,
        skipped=prepared.skipped,
        vocabulary=prepared.vocabulary,
        feature_config=prepared.feature_config,
    )



def _records(spec: DataSpec, split: str, *, cropped: bool = True, with_ids: bool = False,
             shard: tuple[int, int] | None = None) -> tf.data.Dataset:
    """Unbatched `(features, targets)` of one split: filtered, label-mapped, feature-derived, cropped."""
    config = spec.config
    prepared = prepare(spec)
    task = spec.task
    ds = None
    for source, (start, stop) in _sources(spec, split, shard):
        if source not in prepared.builder.info.splits:  # an empty split (every clip in train)
            continue
        part = prepared.builder.as_dataset(split=source if shard is None else f"{source}[{start}:{stop}]",
                                           shuffle_files=False)
        ds = part if ds is None else ds.concatenate(part)
    if ds is None:
        ds = prepared.builder.as_dataset(split="train", shuffle_files=False).take(0)
    table_np = label_map(spec, prepared.vocabulary)[1]
    classes = None if table_np is None else tf.constant(table_np, tf.int32)

    if split != "test" or config.cv_folds:
        roles = split_roles(spec)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(roles), tf.string),
                                                tf.constant(list(roles.values()), tf.int32)),
            default_value=_ROLE_EXCLUDED)
        want = _SPLIT_ROLE[split]
        ds = ds.filter(lambda ex: tf.equal(table.lookup(ex["track_id"]), want))
    else:
        # Classes dropped by the label map leave the test split too; unlabelled examples stay.
        keep = tf.constant(split_ids(spec, "test"), tf.string)
        ds = ds.filter(lambda ex: tf.reduce_any(tf.equal(keep, ex["track_id"])))

    frames = spec.frames
    fcfg = prepared.feature_config
    feature = spec.feature

    def to_pair(ex):
        x = ex[feature.source]
        if cropped:
            x = x[:frames]
        features = {"spectrogram": feature.derive(x, fcfg)}
        if with_ids:
            features["track_id"] = ex["track_id"]
        return features, task.targets(ex, classes)

    return ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def bucket_boundaries(config: DataConfig | DataSpec) -> list[int]:
    """Length boundaries (frames) of the buckets used with `variable_length`: 8 equal-width buckets.

    Args:
        config: the data config.
    """
    frames = resolve(config).frames
    return sorted({max(1, int(round(frames * i / 8))) for i in range(1, 8)})


def make_dataset(config: DataConfig | DataSpec, split: str, *, with_ids: bool = False,
                 shuffle: bool | None = None, shard: tuple[int, int] | None = None) -> tf.data.Dataset:
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
        shard: (index, count): read only that shard of the records, with its own random streams (one input
            pipeline of a distributed run; see the module docstring).

    Raises:
        FileNotFoundError, ValueError: bad input, naming the file and line.
    """
    _check_split(split)
    spec = resolve(config)
    config = spec.config
    if shuffle is None:
        shuffle = split == "train"
    bands = spec.feature.bands(prepare(spec).feature_config)
    count = len(split_ids(spec, split, shard=shard))
    seed = config.seed + (SHARD_SEED_STRIDE * shard[0] if shard else 0)
    length = spec.frames if not config.variable_length else None
    # The split filter hides the size from tf.data; stating it lets Keras size epochs and progress bars.
    ds = _records(spec, split, with_ids=with_ids, shard=shard).apply(
        tf.data.experimental.assert_cardinality(count))
    if length is not None:
        # Pad before the cache, so later epochs only shuffle and batch fixed-size examples.
        ds = ds.map(lambda features, targets: (
            {**features, "spectrogram": tf.ensure_shape(tf.pad(
                features["spectrogram"], [[0, length - tf.shape(features["spectrogram"])[0]], [0, 0]]),
                [length, bands])},
            targets), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(1, min(config.shuffle_buffer, count)), seed=seed, reshuffle_each_iteration=True)
    padded = ({"spectrogram": [length, bands]} | ({"track_id": []} if with_ids else {}),
              spec.task.target_shapes())
    if spec.patch and split == "train":
        ds = _random_patches(ds, spec, seed)
        length = spec.patch
    if config.variable_length and split == "train" and not spec.patch:
        boundaries = bucket_boundaries(spec)
        ds = ds.bucket_by_sequence_length(
            lambda features, _targets: tf.shape(features["spectrogram"])[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[config.batch_size] * (len(boundaries) + 1),
            padded_shapes=padded)
    elif length is not None:
        ds = ds.batch(config.batch_size)
    else:
        ds = ds.padded_batch(config.batch_size, padded_shapes=padded)
    if config.mixup and split == "train":
        ds = _mixup(ds, config, seed)
    return ds.prefetch(tf.data.AUTOTUNE)


def _mixup(ds: tf.data.Dataset, config: DataConfig, seed: int) -> tf.data.Dataset:
    """Mixup on batches: `(features, targets)` -> `(features, targets, sample_weight)` of twice the batch.

    Each batch x is mixed with a seeded shuffle of itself, x' = lam x + (1 - lam) x[perm], lam ~ Beta(a, a);
    x' appears twice, once with the targets of x (weight lam) and once with those of x[perm] (weight 1 - lam),
    so the weighted loss is mixup's lam L(y) + (1 - lam) L(y[perm]) for class indices and regressions alike.
    """
    alpha = float(config.mixup)
    seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)

    def mix(pair, seed):
        features, targets = pair
        x = features["spectrogram"]
        n = tf.shape(x)[0]
        seed = tf.cast(seed, tf.int32)
        perm = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed)
        g1 = tf.random.stateless_gamma([], seed=seed + 1, alpha=alpha)
        g2 = tf.random.stateless_gamma([], seed=seed + 2, alpha=alpha)
        lam = g1 / (g1 + g2)
        mixed = lam * x + (1.0 - lam) * tf.gather(x, perm)
        features = {**features, "spectrogram": tf.concat([mixed, mixed], 0)}
        features.update({k: tf.concat([v, tf.gather(v, perm)], 0) for k, v in features.items() if k != "spectrogram"})
        targets = {k: tf.concat([v, tf.gather(v, perm)], 0) for k, v in targets.items()}
        weights = tf.concat([tf.fill([n], lam), tf.fill([n], 1.0 - lam)], 0)
        return features, targets, weights

    return tf.data.Dataset.zip((ds, seeds)).map(mix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _random_patches(ds: tf.data.Dataset, spec: DataSpec, seed: int) -> tf.data.Dataset:
    """A random `patch_frames` crop of each example, drawn afresh each epoch (seeded, reproducible).

    The crop starts anywhere in the clip's real (non-padding) frames; a clip shorter than a patch is
    zero-padded. The random stream is `Dataset.random` re-randomised each epoch, so epochs differ while
    the same seed gives the same crops.
    """
    patch = spec.patch
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def crop(pair, r):
        features, targets = pair
        x = features["spectrogram"]
        valid = tf.reduce_any(tf.not_equal(x, 0.0), axis=-1)
        length = tf.maximum(tf.reduce_max(tf.where(valid, tf.range(1, tf.shape(x)[0] + 1), 0)), 1)
        start = tf.cast(r % tf.cast(tf.maximum(length - patch, 0) + 1, tf.int64), tf.int32)
        x = x[start:start + patch]
        x = tf.ensure_shape(tf.pad(x, [[0, patch - tf.shape(x)[0]], [0, 0]]), [patch, x.shape[-1]])
        return {**features, "spectrogram": x}, targets

    return tf.data.Dataset.zip((ds, randoms)).map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
