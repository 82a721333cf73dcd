"""2D CNN backbone: repeated conv-BN-ReLU-maxpool blocks over the (time, bands) image."""

from __future__ import annotations

from dataclasses import dataclass

from mgr_tf.core.lazy import keras
from mgr_tf.models.registry import Backbone


@dataclass(frozen=True)
class CNNOptions:
    """Options of the CNN backbone.

    Args:
        cnn_channels: output channels of the conv-BN-ReLU-maxpool blocks, one per block (4 blocks in
            published code on this data). The default is sized for CPU training on full 1293-frame
            inputs; (16, 32, 64, 64) costs about 2.5x more per step.
        cnn_kernel: square kernel size of every convolution.
        cnn_pooling: after the last block: global (global average pooling over time and bands) or
            flatten (flatten the final feature map; ties the model to its input length).
    """

    cnn_channels: tuple[int, ...] = (8, 16, 32, 64)
    cnn_kernel: int = 3
    cnn_pooling: str = "global"

    def __post_init__(self):
        if not (len(self.cnn_channels) >= 1 and all(c > 0 for c in self.cnn_channels)):
            raise ValueError(f"ModelConfig: cnn_channels must be positive integers, got {self.cnn_channels}")
        if self.cnn_kernel < 1:
            raise ValueError(f"ModelConfig: cnn_kernel must be >= 1, got {self.cnn_kernel}")
        if self.cnn_pooling not in ("global", "flatten"):
            raise ValueError(f"ModelConfig: cnn_pooling must be global or flatten, got {self.cnn_pooling!r}")


def conv_block(x, channels: int, kernel: int, regularizer, name: str):
    """One conv-BN-ReLU-maxpool(2x2) block on a (batch, time, bands, channels) tensor.

    Args:
        x: input tensor.
        channels: output channels.
        kernel: square kernel size.
        regularizer: the kernel regularizer (or None).
        name: prefix of the block's layer names.
    """
    x = keras.layers.Conv2D(channels, kernel, padding="same", use_bias=False, kernel_regularizer=regularizer,
                            name=f"{name}_conv")(x)
    # momentum 0.9 rather than Keras' 0.99: these data sets give ~10 steps an epoch, too few for slow
    # moving averages, and inference with half-updated statistics is near chance.
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)


def build_cnn_backbone(config, x, *, frames: int):
    """The CNN of the published genre models: `len(cnn_channels)` conv blocks, then pooling.

    Args:
        config: the model config (cnn_* fields, l2).
        x: the normalised (batch, time, bands) tensor.
        frames: the fixed length the input is padded / centre-cropped to in-graph.

    Returns:
        The (batch, features) tensor.
    """
    from mgr_tf.models.layers import FixedLength, kernel_regularizer  # TensorFlow on demand

    x = FixedLength(frames, name="fixed_length")(x)
    x = keras.layers.Reshape((frames, x.shape[-1], 1), name="add_channel")(x)
    for i, channels in enumerate(config.cnn_channels):
        x = conv_block(x, channels, config.cnn_kernel, kernel_regularizer(config.l2), name=f"block{i + 1}")
    if config.cnn_pooling == "global":
        return keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return keras.layers.Flatten(name="flatten")(x)


BACKBONE = Backbone("cnn", "2D CNN: conv-BN-ReLU-maxpool blocks as in published code on this data, global pooling",
                    CNNOptions, build_cnn_backbone, test_options={"cnn_channels": (4, 4, 8, 8)})
