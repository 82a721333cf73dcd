"""The bottom layer: configuration values, registries, paths, file writing and command-line plumbing.

Nothing here imports TensorFlow or any other part of mgr_tf, so every layer above may use it and the
command-line parsers built on it start in well under a second.
"""
