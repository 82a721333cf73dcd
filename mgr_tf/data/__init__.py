"""Data in: the dataset layout, file readers, the feature-type registry, splits and the tf.data pipeline.

`make_dataset(config, split)` and `dataset_info(config)` are the entry points (see `pipeline`).
"""

from mgr_tf.data.pipeline import (  # noqa: F401
    SPLITS, DatasetInfo, bucket_boundaries, builder_config_name, dataset_info, fingerprint, make_dataset, prepare,
    resolve_root, split_ids, split_roles,
)
