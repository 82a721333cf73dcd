"""LSTM backbone: masked frame pooling, stacked (bidirectional) LSTMs, last-state or mean summary."""

from __future__ import annotations

from dataclasses import dataclass

from mgr_tf.core.lazy import keras
from mgr_tf.models.registry import Backbone


@dataclass(frozen=True)
class LSTMOptions:
    """Options of the LSTM backbone.

    Args:
        lstm_units: units of each stacked LSTM layer, first to last.
        lstm_bidirectional: run each LSTM layer in both directions (outputs concatenated).
        lstm_pooling: summary of the last LSTM layer: last (final state of the unpadded sequence)
            or mean (masked mean over time).
        lstm_frame_stride: average this many consecutive frames (ignoring padding) before the LSTM,
            so a 1293-frame clip becomes 324 steps at 4; 1 keeps every frame (use 1 for beat-synchronous
            inputs, which are already short).
    """

    lstm_units: tuple[int, ...] = (64,)
    lstm_bidirectional: bool = False
    lstm_pooling: str = "last"
    lstm_frame_stride: int = 4

    def __post_init__(self):
        if not (len(self.lstm_units) >= 1 and all(u > 0 for u in self.lstm_units)):
            raise ValueError(f"ModelConfig: lstm_units must be positive integers, got {self.lstm_units}")
        if self.lstm_pooling not in ("last", "mean"):
            raise ValueError(f"ModelConfig: lstm_pooling must be last or mean, got {self.lstm_pooling!r}")
        if self.lstm_frame_stride < 1:
            raise ValueError(f"ModelConfig: lstm_frame_stride must be >= 1, got {self.lstm_frame_stride}")


def build_lstm_backbone(config, x, *, frames: int):
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
    from mgr_tf.models.layers import MaskedFramePooling, kernel_regularizer  # TensorFlow on demand

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


BACKBONE = Backbone("lstm", "masked frame pooling, stacked (optionally bidirectional) LSTMs, last step or masked mean",
                    LSTMOptions, build_lstm_backbone, variable_length=True,
                    test_options={"lstm_units": (8,), "lstm_frame_stride": 2})
