"""Data in: the dataset layout, file readers, the feature-type registry, splits and the tf.data pipeline.

`make_dataset(config, split)` and `dataset_info(config)` are the entry points (see `pipeline`).
"""

from mgr_tf.data.pipeline import (  # noqa: F401
    SPLITS, DatasetInfo, bucket_boundaries, dataset_info, make_dataset, split_ids, split_roles,
)
from mgr_tf.data.prepare import builder_config_name, fingerprint, prepare, resolve_root  # noqa: F401
