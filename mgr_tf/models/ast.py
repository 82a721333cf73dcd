"""AST backbone: the Audio Spectrogram Transformer (Gong et al., Interspeech 2021), sized by preset."""

from __future__ import annotations

from dataclasses import dataclass

from mgr_tf.core.lazy import keras
from mgr_tf.models.registry import Backbone

# AST sizes. "tiny" trains on a laptop CPU; "small" / "base" follow the DeiT / ViT sizes that the
# Audio Spectrogram Transformer (Gong et al., Interspeech 2021) starts from, with its 10-frame
# overlapping stride.
AST_PRESETS: dict[str, dict] = {
    "tiny": {"dim": 64, "depth": 2, "heads": 4, "stride": (16, 16)},
    "small": {"dim": 384, "depth": 12, "heads": 6, "stride": (10, 10)},
    "base": {"dim": 768, "depth": 12, "heads": 12, "stride": (10, 10)},
}


@dataclass(frozen=True)
class ASTOptions:
    """Options of the AST backbone.

    Args:
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

        check(self.ast_preset in AST_PRESETS, f"ast_preset must be one of {tuple(AST_PRESETS)}, got {self.ast_preset!r}")
        check(len(self.ast_patch) == 2 and min(self.ast_patch) >= 1,
              f"ast_patch must be two positive integers (time, bands), got {self.ast_patch}")
        if self.ast_stride is not None:
            check(len(self.ast_stride) == 2 and min(self.ast_stride) >= 1,
                  f"ast_stride must be two positive integers (time, bands), got {self.ast_stride}")
        sizes = self.ast_sizes()
        check(sizes["dim"] % sizes["heads"] == 0,
              f"ast_dim ({sizes['dim']}) must be divisible by ast_heads ({sizes['heads']})")

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


def build_ast_backbone(config, x, *, frames: int):
    """Patch embedding, `depth` pre-norm transformer blocks, final LayerNorm, [CLS] token.

    Args:
        config: the model config (ast_* fields, dropout, l2).
        x: the normalised (batch, time, bands) tensor.
        frames: the fixed length the input is padded / centre-cropped to in-graph (the position
            embedding has one entry per patch).

    Returns:
        The (batch, dim) [CLS] summary.
    """
    from mgr_tf.models.layers import (  # TensorFlow on demand
        ClassTokenPooling,
        FixedLength,
        PatchEmbedding,
        TransformerBlock,
    )

    sizes = config.ast_sizes()
    x = FixedLength(frames, name="fixed_length")(x)
    x = PatchEmbedding(sizes["dim"], sizes["patch"], sizes["stride"], l2=config.l2, name="patch_embedding")(x)
    for i in range(sizes["depth"]):
        x = TransformerBlock(sizes["dim"], sizes["heads"], dropout=config.dropout, l2=config.l2,
                             name=f"encoder_{i + 1}")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    return ClassTokenPooling(name="cls_token")(x)


def _load_ast_weights(model, config) -> None:
    if config.ast_weights:
        from mgr_tf.models.build import load_backbone_weights  # TensorFlow on demand

        load_backbone_weights(model, config.ast_weights)


BACKBONE = Backbone("ast", "Audio Spectrogram Transformer (Gong et al., 2021): patch embedding, class token, "
                    "pre-norm encoder blocks", ASTOptions, build_ast_backbone, after_build=_load_ast_weights,
                    test_options={"ast_dim": 16, "ast_depth": 1, "ast_heads": 2, "ast_patch": (8, 8),
                                  "ast_stride": (8, 8)})
