"""2D CNN backbone: repeated conv-BN-ReLU-maxpool blocks over the (time, bands) image."""

from __future__ import annotations

import keras

from mgr_tf.models.config import ModelConfig
from mgr_tf.models.layers import FixedLength, kernel_regularizer


def conv_block(x, channels: int, kernel: int, l2: float, name: str):
    """One conv-BN-ReLU-maxpool(2x2) block on a (batch, time, bands, channels) tensor.

    Args:
        x: input tensor.
        channels: output channels.
        kernel: square kernel size.
        l2: L2 factor on the kernel.
        name: prefix of the block's layer names.
    """
    x = keras.layers.Conv2D(channels, kernel, padding="same", use_bias=False,
                            kernel_regularizer=kernel_regularizer(l2), name=f"{name}_conv")(x)
    # momentum 0.9 rather than Keras' 0.99: these data sets give ~10 steps an epoch, too few for slow
    # moving averages, and inference with half-updated statistics is near chance.
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)


def build_cnn_backbone(config: ModelConfig, x, *, frames: int):
    """The CNN of the published genre models: `len(cnn_channels)` conv blocks, then pooling.

    Args:
        config: the model config (cnn_* fields, l2).
        x: the normalised (batch, time, bands) tensor.
        frames: the fixed length the input is padded / centre-cropped to in-graph.

    Returns:
        The (batch, features) tensor.
    """
    x = FixedLength(frames, name="fixed_length")(x)
    x = keras.layers.Reshape((frames, x.shape[-1], 1), name="add_channel")(x)
    for i, channels in enumerate(config.cnn_channels):
        x = conv_block(x, channels, config.cnn_kernel, config.l2, name=f"block{i + 1}")
    if config.cnn_pooling == "global":
        return keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return keras.layers.Flatten(name="flatten")(x)
