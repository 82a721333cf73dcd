"""LSTM backbone: masked frame pooling, stacked (bidirectional) LSTMs, last-state or mean summary."""

from __future__ import annotations

import keras

from mgr_tf.models.config import ModelConfig
from mgr_tf.models.layers import MaskedFramePooling, kernel_regularizer


def build_lstm_backbone(config: ModelConfig, x, *, frames: int):
    """Stacks the LSTM layers on a normalised, masked (batch, time, bands) tensor.

    Any input length works: padding frames are masked all the way through, so the summary of a clip
    does not depend on how much zero padding follows it.

    Args:
        config: the model config (lstm_* fields, l2).
        x: the normalised spectrogram tensor, carrying the padding mask.
        frames: nominal input length (unused: the LSTM takes any length).

    Returns:
        The (batch, features) summary tensor.
    """
    del frames
    if config.lstm_frame_stride > 1:
        x = MaskedFramePooling(config.lstm_frame_stride, name="frame_pooling")(x)
        x = keras.layers.Masking(0.0, name="pooled_mask")(x)
    reg = kernel_regularizer(config.l2)
    last = len(config.lstm_units) - 1
    for i, units in enumerate(config.lstm_units):
        sequences = i < last or config.lstm_pooling == "mean"
        # use_cudnn=False: a cuDNN-traced LSTM exports ops that CPU serving cannot run.
        layer = keras.layers.LSTM(units, return_sequences=sequences, kernel_regularizer=reg,
                                  recurrent_regularizer=reg, use_cudnn=False, name=f"lstm_{i + 1}")
        if config.lstm_bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bilstm_{i + 1}")
        x = layer(x)
    if config.lstm_pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="masked_mean")(x)
    return x
