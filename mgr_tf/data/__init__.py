"""Data in: the dataset layout, file readers, splits, the TFDS builder, the synthetic corpus and the tf.data
pipeline.

`make_dataset(config, split)` and `dataset_info(config)` are the entry points (see `pipeline`); `resolve`
(`spec`) is where a `DataConfig` meets the task and feature-type registries. Importing this package costs no
TensorFlow: the pipeline's names below load it on first use, so a command line can resolve and check its
flags before it starts TensorFlow.
"""

from __future__ import annotations

from mgr_tf.data.spec import DataSpec, resolve

# Names of `pipeline` and `prepare` (which import TensorFlow) offered here, loaded on first use. The function
# `prepare` is not among them: its name is the submodule's (`from mgr_tf.data.prepare import prepare`).
_PIPELINE = ("SPLITS", "DatasetInfo", "bucket_boundaries", "dataset_info", "make_dataset", "split_ids", "split_roles")
_PREPARE = ("builder_config_name", "fingerprint", "resolve_root")

__all__ = ["DataSpec", "resolve", *_PIPELINE, *_PREPARE]


def __getattr__(name: str):
    if name in _PIPELINE:
        from mgr_tf.data import pipeline  # TensorFlow on demand

        return getattr(pipeline, name)
    if name in _PREPARE:
        from mgr_tf.data import prepare  # TensorFlow on demand

        return getattr(prepare, name)
    raise AttributeError(f"module 'mgr_tf.data' has no attribute {name!r}")
