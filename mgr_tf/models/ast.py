"""AST backbone: the Audio Spectrogram Transformer (Gong et al., Interspeech 2021), sized by preset."""

from __future__ import annotations

import keras

from mgr_tf.models.config import ModelConfig
from mgr_tf.models.layers import ClassTokenPooling, FixedLength, PatchEmbedding, TransformerBlock


def build_ast_backbone(config: ModelConfig, x, *, frames: int):
    """Patch embedding, `depth` pre-norm transformer blocks, final LayerNorm, [CLS] token.

    Args:
        config: the model config (ast_* fields, dropout, l2).
        x: the normalised (batch, time, bands) tensor.
        frames: the fixed length the input is padded / centre-cropped to in-graph (the position
            embedding has one entry per patch).

    Returns:
        The (batch, dim) [CLS] summary.
    """
    sizes = config.ast_sizes()
    x = FixedLength(frames, name="fixed_length")(x)
    x = PatchEmbedding(sizes["dim"], sizes["patch"], sizes["stride"], l2=config.l2, name="patch_embedding")(x)
    for i in range(sizes["depth"]):
        x = TransformerBlock(sizes["dim"], sizes["heads"], dropout=config.dropout, l2=config.l2,
                             name=f"encoder_{i + 1}")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    return ClassTokenPooling(name="cls_token")(x)
