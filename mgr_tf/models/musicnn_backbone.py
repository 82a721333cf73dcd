"""The musicnn backbone: a pretrained musicnn encoder (frozen, optionally fine-tuned) pooled over 3 s patches.

Transfer from J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music audio
tagging" (ISMIR late-breaking demo 2019; weights from the musicnn 0.1.0 wheel, ISC licence; see
`mgr_tf.models.musicnn` and `mgr_tf.pretrained`). The input is the `musicnn` feature type (16 kHz, 96-band
log-mel frames that `mgr_tf.ingest --encoder musicnn` stores from the audio); it is not standardised, as the
encoder was trained on that scale. The clip is cut into non-overlapping 187-frame (3 s) patches, each patch
is embedded by the encoder (MSD_musicnn: the 200-unit penultimate layer), and the embeddings are averaged
over the clip's patches (all-padding patches left out); a `Normalization` layer, adapted on the training
split's pooled embeddings, standardises them before the task's heads.

Training (`mgr_tf.training.run.fit_phases`): the encoder is frozen, so its pooled embeddings are computed
once per clip and the heads are fitted on them (phase "frozen"); `--musicnn-fine-tune-epochs N` then trains
end to end for N epochs at the learning rate times `--finetune-lr-factor` (phase "finetune"; batch
normalisation statistics stay frozen).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from mgr_tf.feature_types import MUSICNN_BANDS
from mgr_tf.models.registry import Backbone

FAMILY = "musicnn"
ENCODER_LAYER = "musicnn_encoder"
POOL_LAYER = "musicnn_pool"
EMBEDDING_NORM_LAYER = "embedding_norm"
FEATURES = "musicnn"


@dataclass(frozen=True)
class MusicnnOptions:
    """Options of the musicnn backbone.

    Args:
        musicnn_encoder: the pretrained encoder: a model of the musicnn 0.1.0 wheel (MSD_musicnn, MTT_musicnn,
            MSD_vgg, MTT_vgg), converted once into the cache from the wheel (fetched with pip), or a .keras
            file written by `python -m mgr_tf.pretrained musicnn --out`.
        musicnn_pretrained: load the published weights; --no-musicnn-pretrained builds the named architecture
            with random weights (training from scratch).
        musicnn_fine_tune_epochs: after the heads are fitted on frozen embeddings, epochs of end-to-end
            fine-tuning at the learning rate times --finetune-lr-factor (0 = the encoder stays frozen).
    """

    musicnn_encoder: str = "MSD_musicnn"
    musicnn_pretrained: bool = True
    musicnn_fine_tune_epochs: int = 0

    def __post_init__(self):
        if self.musicnn_fine_tune_epochs < 0:
            raise ValueError(f"musicnn_fine_tune_epochs must be >= 0, got {self.musicnn_fine_tune_epochs}")


def encoder(config) -> keras.Model:
    """The patch -> embedding encoder of `config` (frozen), named `ENCODER_LAYER`."""
    from mgr_tf.models.musicnn import EMBEDDING_OUTPUT, PRETRAINED, build_musicnn

    name = config.musicnn_encoder
    if config.musicnn_pretrained:
        from mgr_tf.pretrained import encoder_file

        tagger = keras.saving.load_model(encoder_file(name), compile=False)
    elif name in PRETRAINED:
        tagger = build_musicnn(name)
    else:
        raise ValueError(f"--no-musicnn-pretrained builds one of {', '.join(PRETRAINED)} from scratch, "
                         f"not {name!r}")
    model = keras.Model(tagger.input, tagger.get_layer(EMBEDDING_OUTPUT).output, name=ENCODER_LAYER)
    model.trainable = False
    return model


def build(config, x, *, frames: int):
    """(batch, time, 96) musicnn frames -> (batch, embedding) pooled over 3 s patches and standardised."""
    from mgr_tf.models.layers import SplitWindows, WindowMean
    from mgr_tf.models.musicnn import N_MELS, PATCH_FRAMES

    if x.shape[-1] != N_MELS:
        raise ValueError(f"the musicnn backbone takes the musicnn feature type ({N_MELS} bands), got "
                         f"{x.shape[-1]} bands: train with --features musicnn")
    patches, weights = SplitWindows(PATCH_FRAMES, PATCH_FRAMES, name="musicnn_patches")(x)
    pooled = WindowMean(name=POOL_LAYER)([encoder(config)(patches), weights])
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
        for layer in inner.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return epochs


def check_data(data) -> str | None:
    """One line when the data config cannot feed the encoder."""
    if data.features != FEATURES:
        return (f"--model musicnn takes --features {FEATURES} (the encoder input stored by ingest --encoder "
                f"musicnn), got --features {data.features}")
    if data.patch_frames:
        return ("--model musicnn cuts whole clips into 3 s patches itself: use --patch-frames 0 (its default)")
    return None


BACKBONE = Backbone(
    FAMILY, "pretrained musicnn encoder (Pons and Serra 2019; frozen, optionally fine-tuned), embeddings "
    "pooled over 3 s patches; needs --features musicnn (ingest --encoder musicnn)",
    MusicnnOptions, build, normalize=False, frozen_output=POOL_LAYER, fine_tune=fine_tune, check_data=check_data,
    # Batches of 8 clips: each clip is ten patches through the encoder (about 2 GB of activations a batch).
    data_defaults={"features": FEATURES, "patch_frames": 0, "batch_size": 8}, input_bands=MUSICNN_BANDS,
    test_options={"musicnn_pretrained": False})  # the architecture is fixed; tests skip the weights download
