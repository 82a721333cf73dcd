"""Prepared records: a dataset root -> TFDS records built once (per root, sub-dataset and settings).

Where prepared data goes: `mgr_tf.core.paths.cache_home() / "tfds" / <fingerprint>`, where the
fingerprint is a short SHA-256 of the absolute root path, the sub-dataset, the contents of every metadata
file the records depend on (label files, `genres.txt`, `targets.json`, `features.json`), the names/sizes/mtimes
of the files in the split folders, the builder version, the skip-bad flag and the caps. The readers refuse any
file outside the root (`mgr_tf.data.readers.check_inside`), so these cover every file the records come from:
two roots (or an edited root) never share prepared records, and a root is built once per sub-dataset.

A build holds a lock on its records folder: concurrent first uses of one root wait for the first build and then
read it, and a build killed part-way leaves TFDS's `incomplete.*` folders, removed by the next build.

Next to the TFDS records, `index-<config>.json` keeps the track ids and labels of each split in record
order (read once after the build), so splits are decided in Python without decoding spectrograms.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import tensorflow_datasets as tfds

from mgr_tf.core.config import DataConfig, FeatureConfig, from_dict
from mgr_tf.core.io import locked, write_json
from mgr_tf.core.paths import cache_home, default_corpus_dir
from mgr_tf.core.published import EMOTIONS, GENRES_20
from mgr_tf.data import readers as mgr_io
from mgr_tf.data.fma_spectrograms.fma_spectrograms_dataset_builder import Builder
from mgr_tf.data.layout import FEATURES_FILE, encoder_sample_name
from mgr_tf.data.spec import DataSpec, resolve
from mgr_tf.data.synth.corpus import generate_corpus


@dataclass(frozen=True)
class _Prepared:
    builder: object
    root: Path
    fingerprint: str
    data_dir: Path
    index: dict  # split -> {"track_id": [...], "labelled": [...], label columns ...}
    skipped: tuple[str, ...]
    vocabulary: tuple[str, ...]
    feature_config: FeatureConfig


_PREPARED: dict[tuple, _Prepared] = {}


def builder_config_name(config: DataConfig | DataSpec) -> str:
    """The TFDS config (genre_full, genre_beat, multitask_full, multitask_beat, ...) a DataConfig reads."""
    spec = resolve(config)
    name = {"genre": "genre", "emotion": "multitask"}[spec.task.label_kind] + ("_beat" if spec.config.beat else "_full")
    return f"{name}_{spec.feature.source}" if spec.feature.stored else name


def check_encoder_input(root: Path, config: DataConfig | DataSpec) -> None:
    """For a feature type stored by `ingest --encoder`: one clear error when the root holds none of it.

    Raises:
        ValueError: the root has no stored encoder input (e.g. the published, spectrogram-only folders).
    """
    spec = resolve(config)
    feature = spec.feature
    if not feature.stored:
        return
    sub = mgr_io.sub_dataset_dir(root, spec.sub_dataset)
    pattern = encoder_sample_name("*", feature.source, gz=False)
    if not mgr_io.has_encoder_input(root, spec.sub_dataset, feature.source):
        raise ValueError(
            f"{sub}: no {feature.source} encoder input here (no {pattern}[.gz] files). The {feature.source} encoder "
            f"needs the audio, which spectrogram-only roots (such as the published FMA folders: 22050 Hz, "
            f"128 mel) do not have; make a root from audio with `python -m mgr_tf.ingest --encoder "
            f"{feature.source} ...`")


def resolve_root(config: DataConfig | DataSpec) -> Path:
    """The dataset root of `config`; the embedded synthetic corpus (generated once) when None.

    Args:
        config: the data config.
    """
    config = config.config if isinstance(config, DataSpec) else config
    if config.data_dir is not None:
        return Path(config.data_dir).expanduser().resolve()
    root = default_corpus_dir(0)
    if not _corpus_complete(root):
        print(f"mgr_tf: no --data-dir given; generating the embedded synthetic corpus in {root} "
              "(first use only)", file=sys.stderr, flush=True)
        generate_corpus(root, seed=0)
    return root.resolve()


def _corpus_complete(root: Path) -> bool:
    return all((root / sub / "train_labels.txt").is_file() and (root / sub / "test").is_dir()
               for sub in mgr_io.SUB_DATASETS)


def fingerprint(root: str | Path, config: DataConfig | DataSpec) -> str:
    """Short hash identifying the prepared records of `config` read from `root`.

    Covers the absolute root path, the sub-dataset, the contents of its metadata files (label files,
    genres.txt, targets.json, the root's features.json), the names, sizes and modification times of the files in
    its split folders, the builder version, `skip_bad` and the caps.

    Args:
        root: dataset root.
        config: the data config.

    Raises:
        ValueError: a metadata file links outside the root.
    """
    spec = resolve(config)
    root = Path(root).resolve()
    sub = mgr_io.sub_dataset_dir(root, spec.sub_dataset)
    data = spec.config
    digest = hashlib.sha256()
    for part in (str(root), spec.sub_dataset, str(Builder.VERSION), f"skip_bad={data.skip_bad}",
                 f"caps={data.frame_cap},{data.size_cap_mb}"):
        digest.update(part.encode() + b"\0")
    for path in mgr_io.root_metadata_files(root, spec.sub_dataset):
        digest.update(f"{path.relative_to(root)}\0".encode() + path.read_bytes() + b"\0")
    for split in mgr_io.SPLITS:
        split_dir = sub / split
        if split_dir.is_dir():
            with os.scandir(split_dir) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    try:
                        st = entry.stat()
                        state = f"{st.st_size}:{st.st_mtime_ns}"
                    except OSError:  # a broken link: the reader names it if a label uses it
                        state = "unreadable"
                    digest.update(f"{split}/{entry.name}:{state}\n".encode())
    return digest.hexdigest()[:16]


def prepare(config: DataConfig | DataSpec) -> _Prepared:
    """Builds (once) the TFDS records of `config`'s sub-dataset and reads their index.

    Args:
        config: the data config.

    Raises:
        FileNotFoundError, ValueError: bad input (missing folders or files, bad label lines, bad
            sample files), naming the file and line.
    """
    spec = resolve(config)
    config = spec.config
    root = resolve_root(config)
    name = builder_config_name(spec)
    fp = fingerprint(root, spec)
    key = (fp, name, config.n_mfcc)
    if key in _PREPARED:
        return _PREPARED[key]
    check_encoder_input(root, spec)
    data_dir = cache_home() / "tfds" / fp
    vocabulary = mgr_io.genre_vocabulary(root, spec.sub_dataset) if spec.task.classification else ()
    with locked(data_dir / f".build-{name}.lock", f"the prepared records {data_dir} ({name})"):
        prepared = _build_locked(spec, root, name, fp, data_dir, vocabulary)
    _PREPARED[key] = prepared
    return prepared


def _build_locked(spec: DataSpec, root: Path, name: str, fp: str, data_dir: Path, vocabulary: tuple[str, ...]
                  ) -> _Prepared:
    """`prepare` under the records folder's lock: builds unless another process has, then reads the index."""
    config = spec.config
    # Made under the lock: a builder made before it would not see the records another process has just written.
    builder = Builder(config=name, data_dir=str(data_dir), skip_bad=config.skip_bad,
                      genre_names=vocabulary or GENRES_20, targets=spec.targets or EMOTIONS,
                      frame_cap=config.frame_cap, size_cap_mb=config.size_cap_mb)
    summary_path = data_dir / f"build_summary-{name}.json"
    if not builder.is_prepared():
        _remove_incomplete(Path(builder.data_dir).parent)
        # Validate the label files before TFDS starts, so errors come out as one clear line.
        for split in mgr_io.SPLITS:
            mgr_io.list_split(root, spec.sub_dataset, split, skip_bad=config.skip_bad)
        print(f"mgr_tf: preparing TFDS fma_spectrograms/{name} from {root} into {data_dir} (once)",
              file=sys.stderr, flush=True)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
        skipped = [str(s) for s in builder.skipped]
        summary = {"root": str(root), "config": name, "skipped": skipped,
                   "counts": {s: int(builder.info.splits[s].num_examples) if s in builder.info.splits else 0
                              for s in mgr_io.SPLITS}}
        write_json(summary_path, summary)
        counts = ", ".join(f"{s} {n}" for s, n in summary["counts"].items())
        print(f"mgr_tf: prepared {name}: {counts} examples; {len(skipped)} bad example(s) skipped",
              file=sys.stderr, flush=True)
        for line in skipped:
            print(f"mgr_tf:   skipped {line}", file=sys.stderr)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"skipped": []}
    index = _read_index(builder, data_dir / f"index-{name}.json")
    return _Prepared(builder, root, fp, data_dir, index, tuple(summary["skipped"]), vocabulary,
                     dataclasses.replace(data_feature_config(root), n_mfcc=config.n_mfcc))


def _remove_incomplete(version_parent: Path) -> None:
    """Removes the `incomplete.*` folders a killed build left beside its version folder (TFDS writes a build
    there and renames it when done); called under the build lock, so no live build owns them."""
    if version_parent.is_dir():
        for stale in version_parent.glob("incomplete.*"):
            print(f"mgr_tf: removing {stale}, left by a build that was stopped", file=sys.stderr, flush=True)
            shutil.rmtree(stale, ignore_errors=True)


def data_feature_config(root: str | Path) -> FeatureConfig:
    """The FeatureConfig a root's arrays were made with: its features.json, else the published settings."""
    path = Path(root) / FEATURES_FILE
    if not path.is_file():
        return FeatureConfig()
    mgr_io.check_inside(root, path, "feature settings file")
    try:
        return from_dict(FeatureConfig, json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a feature settings file ({exc})") from None


def _read_index(builder, path: Path) -> dict:
    """Track ids and labels of each split in record order (one pass, spectrograms not decoded)."""
    if path.is_file():
        return json.loads(path.read_text())
    index = {}
    for split in mgr_io.SPLITS:
        if split not in builder.info.splits:  # an empty split (every clip in train)
            index[split] = {key: [] for key in index["train"]}
            continue
        arrays = [k for k, f in builder.info.features.items() if len(f.shape) == 2]  # (time, bands) arrays
        ds = builder.as_dataset(split=split, shuffle_files=False,
                                decoders={k: tfds.decode.SkipDecoding() for k in arrays})
        ds = ds.map(lambda ex: {k: v for k, v in ex.items() if k not in arrays})
        columns: dict[str, list] = {}
        for batch in ds.batch(4096).as_numpy_iterator():
            for k, v in batch.items():
                values = [x.decode() for x in v] if v.dtype == object else v.tolist()
                columns.setdefault(k, []).extend(values)
        index[split] = columns
    write_json(path, index)
    return index
