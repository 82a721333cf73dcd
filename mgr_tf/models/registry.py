"""The backbone registry: each family describes itself once (options, builder, and for a pretrained encoder what
training and the data must know about it); `mgr_tf.models` registers each family with one line.

A backbone maps the normalised (batch, time, bands) spectrogram tensor to a (batch, features) embedding. Its
module defines a frozen dataclass of its options (flag names carry the family prefix, e.g. `cnn_channels` ->
`--cnn-channels`) and a `Backbone` entry. The entries import no TensorFlow (a family's builder brings it in
when it runs), so the command-line parsers that list the families and their flags stay fast.

`model_config` and `model_config_from_dict` are the resolve step of `mgr_tf.core.config.ModelConfig`: they
look the family up and fill in its options.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mgr_tf.core.config import FeatureConfig, ModelConfig, from_dict
from mgr_tf.core.registry import Registry
from mgr_tf.features.types import FeatureType, register_feature_type


@dataclass(frozen=True)
class Tagger:
    """How a converted pretrained tagger runs on audio (for its TF Serving export and `predict --tags`).

    Args:
        frontend: fn(waveforms (..., samples) at `sample_rate`) -> patches (..., patches, frames, bands), in
            graph ops.
        sample_rate: the rate of the waveforms it takes.
        patch_shape: (frames, bands) of one patch, the model's input.
        tags_of: fn(converted model) -> its tag names, in output order.
        load_audio: fn(path) -> mono float32 waveform at `sample_rate`.
        weights: the weights' origin and licence, recorded in the export.
    """

    frontend: Callable
    sample_rate: int
    patch_shape: tuple[int, int]
    tags_of: Callable
    load_audio: Callable
    weights: str


@dataclass(frozen=True)
class Converter:
    """`python -m mgr_tf.pretrained NAME`: published weights -> a `.keras` file (and optionally a tagger export).

    Args:
        help: one line for the command's --help.
        add_arguments: fn(parser) adding the family's flags (where the weights are, which preset, --out).
        convert: fn(parsed flags) -> the `.keras` file written.
        tagger: fn() -> the `Tagger` of the converted models.
        description: the subcommand's longer description (default: `help`).
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    convert: Callable[[argparse.Namespace], Path]
    tagger: Callable[[], Tagger]
    description: str = ""


@dataclass(frozen=True)
class Encoder:
    """What makes a backbone a pretrained encoder, for the data and for training.

    Args:
        feature_type: the input it takes, computed from the audio and stored per clip by `ingest --encoder NAME`
            (registered together with the backbone). The input is not standardised: the encoder takes its own
            scale.
        frozen_output: the layer ending the frozen part: training fits what follows on its output, computed
            once per example, before any fine-tuning.
        fine_tune: fn(model, config) -> epochs: unfreezes what fine-tuning trains (0 = the encoder stays frozen).
        fine_tune_epochs: fn(config) -> the epochs `fine_tune` will return, without unfreezing anything.
        batch_size: clips per batch (the data default of the family's flags).
        converter: the `python -m mgr_tf.pretrained` command of the family, if it converts published weights.
    """

    feature_type: FeatureType
    frozen_output: str
    fine_tune: Callable[[Any, ModelConfig], int]
    fine_tune_epochs: Callable[[ModelConfig], int] = lambda config: 0
    batch_size: int = 8
    converter: Converter | None = None


@dataclass(frozen=True)
class Backbone:
    """One backbone family.

    Args:
        name: the `--model` value.
        description: one line for --help and the docs.
        options: frozen dataclass of the family's options (validated in its `__post_init__`).
        build: fn(config: ModelConfig, x, *, frames) -> (batch, features) tensor; `config` answers the
            common fields (dropout, l2) and the family's options as attributes.
        variable_length: takes variable-length, zero-padded input and masks the padding (batches by
            length instead of padding or cropping to a fixed length).
        after_build: optional fn(model, config) run on the finished model (e.g. loading weights).
        test_options: small options for fast tests (the shared harness builds every family with them).
        encoder: for a pretrained encoder: its stored input and frozen part (see `Encoder`).
        fixed_output: for a family without trainable weights before its heads (the summary baseline): the
            layer whose output feeds them; training computes it once per clip and fits only the heads.
    """

    name: str
    description: str
    options: type
    build: Callable
    variable_length: bool = False
    after_build: Callable | None = None
    test_options: dict = dataclasses.field(default_factory=dict)
    encoder: Encoder | None = None
    fixed_output: str | None = None

    @property
    def frozen_layer(self) -> str | None:
        """The layer whose output does not train (an encoder's frozen part, or `fixed_output`), else None."""
        return self.encoder.frozen_output if self.encoder else self.fixed_output

    @property
    def normalize(self) -> bool:
        """Standardise the input with the training split's per-band statistics (all but pretrained encoders)."""
        return self.encoder is None

    @property
    def input_bands(self) -> int | None:
        """The bands per frame the family requires (a pretrained encoder's input); None = any."""
        return self.encoder.feature_type.bands(FeatureConfig()) if self.encoder else None

    @property
    def data_defaults(self) -> dict:
        """DataConfig fields the training flags default to with this family (flags still win)."""
        if self.encoder is None:
            # Statistics of random crops are not the clip's: a family with fixed features reads whole clips.
            return {"patch_frames": 0} if self.fixed_output else {}
        # The encoder cuts whole clips into its own patches.
        return {"features": self.encoder.feature_type.name, "patch_frames": 0, "batch_size": self.encoder.batch_size}

    def check_data(self, features: str, patch_frames: int | None) -> str | None:
        """One line when data of this feature type and patch length cannot feed the family, else None."""
        if self.encoder is None:
            return None
        wanted = self.encoder.feature_type.name
        if features != wanted:
            return (f"--model {self.name} takes --features {wanted} (the encoder input stored by ingest --encoder "
                    f"{wanted}), got --features {features}")
        if patch_frames:
            return f"--model {self.name} cuts whole clips into its own patches: use --patch-frames 0 (its default)"
        return None


BACKBONES: Registry[Backbone] = Registry("family", prefix="ModelConfig: ")
get_backbone = BACKBONES.lookup


def register_backbone(backbone: Backbone) -> Backbone:
    """Adds a family (replacing one of that name), and the stored input of a pretrained encoder; returns it."""
    if backbone.encoder is not None:
        register_feature_type(backbone.encoder.feature_type)
    return BACKBONES.register(backbone)


def model_config(family: str = "cnn", **kwargs) -> ModelConfig:
    """A `ModelConfig` of `family` from flat keyword arguments: common fields and the family's options mixed.

    Raises:
        ValueError: naming an unknown family, or an argument that is neither common nor an option of the family.
    """
    spec = get_backbone(family)
    common = {f.name for f in dataclasses.fields(ModelConfig)} - {"family", "backbone"}
    options = {f.name for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(kwargs) - common - options)
    if unknown:
        raise ValueError(f"ModelConfig: {', '.join(unknown)} is not an option of the {family} backbone "
                         f"(its options: {', '.join(sorted(options)) or 'none'})")
    return ModelConfig(family=family, **{k: v for k, v in kwargs.items() if k in common},
                       backbone=spec.options(**{k: v for k, v in kwargs.items() if k in options}))


def model_config_from_dict(data: dict) -> ModelConfig:
    """The config from its `to_dict` form (as in a run's config.json)."""
    data = dict(data)
    family = data.pop("family", "cnn")
    if isinstance(data.get("backbone"), dict):
        data.update(data.pop("backbone"))
    data.pop("backbone", None)
    return model_config(family, **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def resolved(config: ModelConfig) -> ModelConfig:
    """`config` with its family's options filled in (their defaults when unset), checked against the registry.

    Raises:
        ValueError: an unknown family, or options of another family.
    """
    spec = get_backbone(config.family)
    if config.backbone is None:
        return dataclasses.replace(config, backbone=spec.options())
    if isinstance(config.backbone, dict):
        return dataclasses.replace(config, backbone=from_dict(spec.options, config.backbone))
    if not isinstance(config.backbone, spec.options):
        raise ValueError(f"ModelConfig: backbone options for {config.family} must be {spec.options.__name__}, got "
                         f"{type(config.backbone).__name__}")
    return config
