"""`--model musicnn`: a pretrained musicnn encoder (frozen, optionally fine-tuned) pooled over 3 s patches.

The input is the `musicnn` feature type (16 kHz, 96-band log-mel frames that `mgr_tf.ingest --encoder musicnn`
stores from the audio); it is not standardised, as the encoders were trained on that scale. The clip is cut into
non-overlapping 187-frame (3 s) patches, each patch is embedded by the encoder (MSD_musicnn and MTT_musicnn: the
200-unit penultimate layer), and the embeddings are averaged over the clip's patches (all-padding patches left
out); a `Normalization` layer, adapted on the training split's pooled embeddings, standardises them before the
task's heads.

`--musicnn-encoder A+B` (the default is MSD_musicnn+MTT_musicnn) runs several encoders on the same patches and
concatenates their embeddings: all the wheel's models take the same input. The two taggers were trained on
different music and tags (the Million Song Dataset's Last.fm tags, mostly genres; MagnaTagATune's, mostly
instruments, timbre and mood); on Emotify the pair beat MSD_musicnn alone and matched MTT_musicnn alone
(docs/results.md).

Training (`mgr_tf.training.fit`): the encoder is frozen, so its pooled embeddings are computed once per clip and
the heads are fitted on them (phase "frozen"); `--musicnn-fine-tune-epochs N` then trains end to end for N epochs
at the learning rate times `--finetune-lr-factor` (phase "finetune"; batch normalisation statistics stay frozen).
"""

from __future__ import annotations

import keras

from mgr_tf.models.build import at_precision, nested_layers
from mgr_tf.models.layers import SplitWindows, WindowMean, WindowPool
from mgr_tf.models.musicnn.architecture import build_musicnn
from mgr_tf.models.musicnn.convert import encoder_file
from mgr_tf.models.musicnn.presets import (
    EMBEDDING_NORM_LAYER,
    EMBEDDING_OUTPUT,
    ENCODER_LAYER,
    N_MELS,
    PATCH_FRAMES,
    POOL_LAYER,
    PRETRAINED,
    encoder_names,
)


def _tagger_embedding(name: str, pretrained: bool, model_name: str) -> keras.Model:
    """One tagger's patch -> embedding part, named `model_name`."""
    if pretrained:
        tagger = keras.saving.load_model(encoder_file(name), compile=False)
    elif name in PRETRAINED:
        tagger = build_musicnn(name)
    else:
        raise ValueError(f"--no-musicnn-pretrained builds one of {', '.join(PRETRAINED)} from scratch, "
                         f"not {name!r}")
    return keras.Model(tagger.input, tagger.get_layer(EMBEDDING_OUTPUT).output, name=model_name)


def encoder(config) -> keras.Model:
    """The patch -> embedding encoder of `config` (frozen, at `config.musicnn_precision`), named `ENCODER_LAYER`.

    One name gives that tagger's embedding part; several (`encoder_names`) give a model running each of them,
    nested as `ENCODER_LAYER`_1, _2, ..., with their embeddings concatenated in the order named.
    """
    names = encoder_names(config.musicnn_encoder)
    parts = [at_precision(_tagger_embedding(name, config.musicnn_pretrained,
                                            ENCODER_LAYER if len(names) == 1 else f"{ENCODER_LAYER}_{i}"),
                          config.musicnn_precision) for i, name in enumerate(names, 1)]
    if len(parts) == 1:
        model = parts[0]
    else:
        patches = keras.Input(shape=(PATCH_FRAMES, N_MELS), name="patches")
        joined = keras.layers.Concatenate(name="embeddings")([part(patches) for part in parts])
        model = keras.Model(patches, joined, name=ENCODER_LAYER)
    model.trainable = False
    return model


def build(config, x, *, frames: int):
    """(batch, time, 96) musicnn frames -> (batch, embedding) pooled over 3 s patches and standardised."""
    del frames  # any length: whole 3 s patches
    if x.shape[-1] != N_MELS:
        raise ValueError(f"the musicnn backbone takes the musicnn feature type ({N_MELS} bands), got "
                         f"{x.shape[-1]} bands: train with --features musicnn")
    patches, weights = SplitWindows(PATCH_FRAMES, PATCH_FRAMES, name="musicnn_patches")(x)
    pooling = WindowMean(name=POOL_LAYER) if config.musicnn_pool == "mean" else WindowPool(config.musicnn_pool,
                                                                                         name=POOL_LAYER)
    pooled = pooling([encoder(config)(patches), weights])
    return keras.layers.Normalization(axis=-1, name=EMBEDDING_NORM_LAYER)(pooled)


def fine_tune(model: keras.Model, config) -> int:
    """Unfreezes the encoder for end-to-end fine-tuning (batch normalisation stays in inference mode).

    Returns:
        The fine-tuning epochs (0 = none; then nothing is unfrozen).
    """
    epochs = config.musicnn_fine_tune_epochs
    if epochs:
        inner = model.get_layer(ENCODER_LAYER)
        inner.trainable = True
        for layer in nested_layers(inner):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return epochs
