"""`ModelConfig`: every architecture choice of the LSTM, CNN and AST backbones in one frozen object."""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("lstm", "cnn", "ast")

# AST sizes. "tiny" trains on a laptop CPU; "small" / "base" follow the DeiT / ViT sizes that the
# Audio Spectrogram Transformer (Gong et al., Interspeech 2021) starts from, with its 10-frame
# overlapping stride.
AST_PRESETS: dict[str, dict] = {
    "tiny": {"dim": 64, "depth": 2, "heads": 4, "stride": (16, 16)},
    "small": {"dim": 384, "depth": 12, "heads": 6, "stride": (10, 10)},
    "base": {"dim": 768, "depth": 12, "heads": 12, "stride": (10, 10)},
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model: the backbone family, its sizes and the regularisation.

    Args:
        family: backbone family: lstm, cnn or ast.
        dropout: dropout rate before each output head (and inside the AST blocks).
        l2: L2 weight-decay factor on the kernels of dense, convolution and recurrent layers (0 = none).
        lstm_units: units of each stacked LSTM layer, first to last.
        lstm_bidirectional: run each LSTM layer in both directions (outputs concatenated).
        lstm_pooling: summary of the last LSTM layer: last (final state of the unpadded sequence)
            or mean (masked mean over time).
        lstm_frame_stride: average this many consecutive frames (ignoring padding) before the LSTM,
            so a 1293-frame clip becomes 324 steps at 4; 1 keeps every frame (use 1 for beat-synchronous
            inputs, which are already short).
        cnn_channels: output channels of the conv-BN-ReLU-maxpool blocks, one per block (4 blocks in
            published code on this data). The default is sized for CPU training on full 1293-frame
            inputs; (16, 32, 64, 64) costs about 2.5x more per step.
        cnn_kernel: square kernel size of every convolution.
        cnn_pooling: after the last block: global (global average pooling over time and bands) or
            flatten (flatten the final feature map; ties the model to its input length).
        ast_preset: AST size preset: tiny (CPU-friendly), small or base; fields left unset come from it.
        ast_patch: patch size (time frames, bands) of the AST patch embedding.
        ast_stride: patch stride (time, bands); smaller than the patch gives overlapping patches;
            None = the preset's.
        ast_dim: token width; None = the preset's.
        ast_depth: number of transformer encoder blocks; None = the preset's.
        ast_heads: attention heads per block; None = the preset's.
        ast_weights: local .keras model or .weights.h5 file whose AST backbone weights initialise the
            model (layers matched by name and shape); None = random initialisation. Nothing is downloaded.
    """

    family: str = "cnn"
    dropout: float = 0.3
    l2: float = 0.0
    lstm_units: tuple[int, ...] = (64,)
    lstm_bidirectional: bool = False
    lstm_pooling: str = "last"
    lstm_frame_stride: int = 4
    cnn_channels: tuple[int, ...] = (8, 16, 32, 64)
    cnn_kernel: int = 3
    cnn_pooling: str = "global"
    ast_preset: str = "tiny"
    ast_patch: tuple[int, ...] = (16, 16)
    ast_stride: tuple[int, ...] | None = None
    ast_dim: int | None = None
    ast_depth: int | None = None
    ast_heads: int | None = None
    ast_weights: str | None = None

    def __post_init__(self):
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"ModelConfig: {message}")

        check(self.family in FAMILIES, f"family must be one of {FAMILIES}, got {self.family!r}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.l2 >= 0.0, f"l2 must be >= 0, got {self.l2}")
        check(len(self.lstm_units) >= 1 and all(u > 0 for u in self.lstm_units),
              f"lstm_units must be positive integers, got {self.lstm_units}")
        check(self.lstm_pooling in ("last", "mean"), f"lstm_pooling must be last or mean, got {self.lstm_pooling!r}")
        check(self.lstm_frame_stride >= 1, f"lstm_frame_stride must be >= 1, got {self.lstm_frame_stride}")
        check(len(self.cnn_channels) >= 1 and all(c > 0 for c in self.cnn_channels),
              f"cnn_channels must be positive integers, got {self.cnn_channels}")
        check(self.cnn_kernel >= 1, f"cnn_kernel must be >= 1, got {self.cnn_kernel}")
        check(self.cnn_pooling in ("global", "flatten"),
              f"cnn_pooling must be global or flatten, got {self.cnn_pooling!r}")
        check(self.ast_preset in AST_PRESETS, f"ast_preset must be one of {tuple(AST_PRESETS)}, got {self.ast_preset!r}")
        check(len(self.ast_patch) == 2 and min(self.ast_patch) >= 1,
              f"ast_patch must be two positive integers (time, bands), got {self.ast_patch}")
        if self.ast_stride is not None:
            check(len(self.ast_stride) == 2 and min(self.ast_stride) >= 1,
                  f"ast_stride must be two positive integers (time, bands), got {self.ast_stride}")
        dim, heads = self.ast_sizes()["dim"], self.ast_sizes()["heads"]
        check(dim % heads == 0, f"ast_dim ({dim}) must be divisible by ast_heads ({heads})")

    def ast_sizes(self) -> dict:
        """The AST sizes in effect: the preset overridden by the fields that are set."""
        sizes = dict(AST_PRESETS[self.ast_preset])
        for key in ("dim", "depth", "heads", "stride"):
            value = getattr(self, f"ast_{key}")
            if value is not None:
                sizes[key] = value
        sizes["stride"] = tuple(sizes["stride"])
        sizes["patch"] = tuple(self.ast_patch)
        return sizes
