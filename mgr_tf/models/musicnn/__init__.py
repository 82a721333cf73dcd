"""musicnn (J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music audio tagging",
ISMIR late-breaking demo 2019): a pretrained encoder family in one folder.

- `presets`: the four models of the musicnn 0.1.0 wheel (ISC licence), their tags and signal settings;
- `architecture`: the Keras 3 port of the musicnn and vgg networks, layers named after their TF1 scopes;
- `frontend`: the 16 kHz, 96-band log-mel front end in graph ops, and audio read at 16 kHz;
- `convert`: the wheel's TF1 checkpoints -> `.keras` files, and the cache of converted encoders;
- `parity`: the shipped TF1 graph itself, run for parity checks against the port;
- `tagging`: tags of audio files;
- `backbone`: `--model musicnn`, the frozen encoder pooled over 3 s patches, with the task's heads.

This module is the family's card, read without TensorFlow: its options, the encoder input it stores per clip
(the `musicnn` feature type), its `Backbone` entry and its `python -m mgr_tf.pretrained musicnn` converter.
`mgr_tf.models` registers `BACKBONE` with one line; each function here loads its part on demand.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from mgr_tf.core.config import PRECISIONS, FeatureConfig
from mgr_tf.features.types import FeatureType
from mgr_tf.models.musicnn.presets import (
    ARCHITECTURES,
    CLIP_FRAMES,
    DEFAULT_ENCODER,
    FEATURES,
    N_MELS,
    PATCH_FRAMES,
    POOL_LAYER,
    PRETRAINED,
    SAMPLE_RATE,
    encoder_names,
)
from mgr_tf.models.registry import Backbone, Converter, Encoder, Tagger

FAMILY = "musicnn"
WEIGHTS = "musicnn 0.1.0 (Pons and Serra, ISMIR-LBD 2019), ISC licence"


POOLINGS = ("mean", "mean+std", "max")  # as `mgr_tf.models.layers.WindowPool` computes them


@dataclass(frozen=True)
class MusicnnOptions:
    """Options of the musicnn backbone.

    Args:
        musicnn_encoder: the pretrained encoder: a model of the musicnn 0.1.0 wheel (MSD_musicnn, MTT_musicnn,
            MSD_vgg, MTT_vgg), converted once into the cache from the wheel (fetched with pip), or a .keras
            file written by `python -m mgr_tf.pretrained musicnn --out`; several joined by "+" run side by side
            on the same patches, their embeddings concatenated. Default: MSD_musicnn+MTT_musicnn (on Emotify the
            pair beat MSD_musicnn alone, 0.825 against 0.797 on the 400 clips, docs/results.md).
        musicnn_pretrained: load the published weights; --no-musicnn-pretrained builds the named architecture
            with random weights (training from scratch).
        musicnn_fine_tune_epochs: after the heads are fitted on frozen embeddings, epochs of end-to-end
            fine-tuning at the learning rate times --finetune-lr-factor (0 = the encoder stays frozen).
        musicnn_precision: the encoder's compute precision: float32 (bit-exact with the published graph) or
            bfloat16 (Keras mixed_bfloat16: float32 weights and embeddings, bfloat16 arithmetic; for CPUs with
            fast bfloat16, see docs/results.md).
        musicnn_pool: how a clip's 3 s patch embeddings are pooled: mean (the default: on Emotify's genres a
            logistic regression on mean-pooled MSD_musicnn embeddings scored 0.797 against 0.790 for mean+std and
            0.768 for max, docs/results.md), mean+std (their standard deviation appended), or max.
    """

    musicnn_encoder: str = DEFAULT_ENCODER
    musicnn_pretrained: bool = True
    musicnn_fine_tune_epochs: int = 0
    musicnn_precision: str = field(default="float32", metadata={"choices": PRECISIONS})
    musicnn_pool: str = field(default="mean", metadata={"choices": POOLINGS})

    def __post_init__(self):
        encoder_names(self.musicnn_encoder)  # ValueError on an empty or repeated name
        if self.musicnn_fine_tune_epochs < 0:
            raise ValueError(f"musicnn_fine_tune_epochs must be >= 0, got {self.musicnn_fine_tune_epochs}")
        if self.musicnn_pool not in POOLINGS:
            raise ValueError(f"musicnn_pool must be one of {', '.join(POOLINGS)}, got {self.musicnn_pool!r}")
        if self.musicnn_precision not in PRECISIONS:
            raise ValueError(f"musicnn_precision must be one of {', '.join(PRECISIONS)}, got {self.musicnn_precision!r}")


def _from_audio(waveform, cfg: FeatureConfig):
    from mgr_tf.models.musicnn.frontend import musicnn_input  # TensorFlow on demand

    return musicnn_input(waveform, cfg.sample_rate)


def _waveform_layer(cfg: FeatureConfig):
    from mgr_tf.models.musicnn.frontend import MusicnnFrontend  # TensorFlow on demand

    return MusicnnFrontend(name="musicnn_frontend")


def _build(config, x, *, frames: int):
    from mgr_tf.models.musicnn.backbone import build  # TensorFlow on demand

    return build(config, x, frames=frames)


def _fine_tune(model, config) -> int:
    from mgr_tf.models.musicnn.backbone import fine_tune  # TensorFlow on demand

    return fine_tune(model, config)


def _add_converter_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", metavar="PATH", help="the musicnn-0.1.0-py3-none-any.whl file (read as a zip; "
                        "get it with `pip download musicnn==0.1.0 --no-deps`)")
    source.add_argument("--dir", metavar="PATH",
                        help="an unzipped wheel, its musicnn/ folder, or one model folder (holding .index, "
                             ".data-00000-of-00001, .meta, config.json)")
    parser.add_argument("--model", required=True, choices=sorted(PRETRAINED), help="which model to convert")
    parser.add_argument("--out", required=True, metavar="FILE.keras", help="output Keras file")


def _convert(args: argparse.Namespace) -> Path:
    from mgr_tf.models.musicnn.convert import convert  # TensorFlow on demand

    return convert(args.model, args.out, wheel=args.wheel, directory=args.dir)


def _tagger() -> Tagger:
    from mgr_tf.models.musicnn import frontend, tagging  # TensorFlow on demand

    return Tagger(frontend=frontend.musicnn_frontend, sample_rate=SAMPLE_RATE,
                  patch_shape=(PATCH_FRAMES, N_MELS), tags_of=tagging.tag_names_of,
                  load_audio=frontend.load_audio_16k, weights=WEIGHTS)


_CONVERTER_DESCRIPTION = (
    "Convert one TF1 checkpoint of the musicnn 0.1.0 wheel (get it with `pip download musicnn==0.1.0 --no-deps`) "
    "to a Keras 3 model with outputs 'tags' (batch, 50) and 'embedding', taking (batch, 187, 96) log-mel patches "
    "(mgr_tf.models.musicnn.frontend). Architectures: "
    + "; ".join(f"{k}: embedding = {a.embedding}" for k, a in ARCHITECTURES.items()))

# musicnn's input: 16 kHz, n_fft 512, hop 256, 96 Slaney mel bands, log10(1 + 10000 x) (see `frontend`).
FEATURE_TYPE = FeatureType(
    FEATURES, "musicnn's encoder input: 16 kHz, 96-band log10(1 + 10000 mel) frames, stored by "
    "`ingest --encoder musicnn` (needs the audio; spectrogram-only roots cannot feed it)",
    lambda cfg: N_MELS, lambda x, cfg: x, source=FEATURES, frames=CLIP_FRAMES,
    from_audio=_from_audio, sample_rate=lambda cfg: SAMPLE_RATE, waveform_layer=_waveform_layer)

BACKBONE = Backbone(
    FAMILY, "pretrained musicnn encoder (Pons and Serra 2019; frozen, optionally fine-tuned), embeddings "
    "pooled over 3 s patches; needs --features musicnn (ingest --encoder musicnn)",
    MusicnnOptions, _build,
    # Batches of 8 clips: each clip is ten patches through the encoder (about 2 GB of activations a batch).
    encoder=Encoder(FEATURE_TYPE, frozen_output=POOL_LAYER, fine_tune=_fine_tune,
                    fine_tune_epochs=lambda config: config.musicnn_fine_tune_epochs, batch_size=8,
                    converter=Converter("musicnn 0.1.0 taggers (Pons and Serra 2019): MTT/MSD x musicnn/vgg",
                                        _add_converter_arguments, _convert, _tagger, _CONVERTER_DESCRIPTION)),
    test_options={"musicnn_pretrained": False})  # the architecture is fixed; tests skip the weights download
