"""TFDS dataset builders of mgr_tf, shipped inside the package so a plain `pip install` carries them.

`datasets/fma_spectrograms` (the `tfds new` layout used by `tfds build`) is a link to the
`fma_spectrograms` folder here.
"""
