"""Serving: SavedModel export for TF Serving, its request formats, and predictions from files."""

from mgr_tf.serving.requests import RequestError, grpc_predict, load_signature, rest_predict  # noqa: F401
