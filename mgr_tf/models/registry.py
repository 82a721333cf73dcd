"""The backbone registry: each family module describes itself once (options, builder, presets).

A backbone maps the normalised (batch, time, bands) spectrogram tensor to a (batch, features)
embedding. Its module defines a frozen dataclass of its options (flag names carry the family prefix,
e.g. `cnn_channels` -> `--cnn-channels`) and a `Backbone` entry; `mgr_tf.models` registers it with one
line. The training CLI, tune's validation, the benchmarks and the test harness read `BACKBONES`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from mgr_tf.registry import Registry


@dataclass(frozen=True)
class Backbone:
    """One backbone family.

    Args:
        name: the `--model` value.
        description: one line for --help and the README.
        options: frozen dataclass of the family's options (validated in its `__post_init__`).
        build: fn(config: ModelConfig, x, *, frames) -> (batch, features) tensor; `config` answers the
            common fields (dropout, l2) and the family's options as attributes.
        variable_length: takes variable-length, zero-padded input and masks the padding (batches by
            length instead of padding or cropping to a fixed length).
        after_build: optional fn(model, config) run on the finished model (e.g. loading weights).
        test_options: small options for fast tests (the shared harness builds every family with them).
        normalize: standardise the input with the training split's per-band statistics; False for a
            pretrained encoder that takes its own input scale.
        frozen_output: the layer ending a frozen pretrained part: training fits what follows on its output,
            computed once per example, before any fine-tuning (None = train the whole model).
        fine_tune: with `frozen_output`: fn(model, config) -> epochs; unfreezes what fine-tuning trains and
            returns the fine-tuning epochs (0 = stay frozen).
        check_data: optional fn(DataConfig) -> one-line problem (or None) when the data cannot feed it.
        data_defaults: DataConfig fields the training CLI defaults to with this family (flags still win).
        input_bands: the bands per frame it requires (a pretrained encoder's input); None = any.
    """

    name: str
    description: str
    options: type
    build: Callable
    variable_length: bool = False
    after_build: Callable | None = None
    test_options: dict = dataclasses.field(default_factory=dict)
    normalize: bool = True
    frozen_output: str | None = None
    fine_tune: Callable | None = None
    check_data: Callable | None = None
    data_defaults: dict = dataclasses.field(default_factory=dict)
    input_bands: int | None = None


BACKBONES: Registry[Backbone] = Registry("family", prefix="ModelConfig: ")
register_backbone = BACKBONES.register
get_backbone = BACKBONES.lookup


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model: the backbone family with its options, and the regularisation.

    Args:
        family: backbone family (a name in `BACKBONES`: lstm, cnn, ast, summary, ...).
        dropout: dropout rate before each output head (and inside the AST blocks).
        l2: L2 weight-decay factor on the kernels of dense, convolution and recurrent layers (0 = none).
        gain_db: training-only random gain: a uniform offset in [-gain_db, gain_db] dB on the log-mel bands
            of each example (0 = off).
        time_masks: training-only SpecAugment time masks per example (0 = off).
        time_mask_width: maximum width of a time mask in frames.
        freq_masks: training-only SpecAugment frequency masks per example (0 = off).
        freq_mask_width: maximum width of a frequency mask in bands.
        backbone: the family's options dataclass; None = its defaults. `ModelConfig.of` builds it from
            keyword arguments, and the family's options are readable as attributes of the config.
    """

    family: str = "cnn"
    dropout: float = 0.3
    l2: float = 0.0
    gain_db: float = 0.0
    time_masks: int = 0
    time_mask_width: int = 20
    freq_masks: int = 0
    freq_mask_width: int = 16
    backbone: Any = None

    def __post_init__(self):
        spec = get_backbone(self.family)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.l2 < 0.0:
            raise ValueError(f"ModelConfig: l2 must be >= 0, got {self.l2}")
        if min(self.gain_db, self.time_masks, self.time_mask_width, self.freq_masks, self.freq_mask_width) < 0:
            raise ValueError("ModelConfig: gain_db, time_masks, time_mask_width, freq_masks and freq_mask_width "
                             "must be >= 0")
        if self.backbone is None:
            object.__setattr__(self, "backbone", spec.options())
        elif isinstance(self.backbone, dict):
            object.__setattr__(self, "backbone", _options_from_dict(spec.options, self.backbone))
        elif not isinstance(self.backbone, spec.options):
            raise ValueError(f"ModelConfig: backbone options for {self.family} must be "
                             f"{spec.options.__name__}, got {type(self.backbone).__name__}")

    @classmethod
    def of(cls, family: str = "cnn", **kwargs) -> "ModelConfig":
        """A config from flat keyword arguments: common fields and the family's options mixed.

        Raises:
            ValueError: naming an argument that is neither common nor an option of the family.
        """
        spec = get_backbone(family)
        common = {f.name for f in dataclasses.fields(cls)} - {"family", "backbone"}
        options = {f.name for f in dataclasses.fields(spec.options)}
        unknown = sorted(set(kwargs) - common - options)
        if unknown:
            raise ValueError(f"ModelConfig: {', '.join(unknown)} is not an option of the {family} backbone "
                             f"(its options: {', '.join(sorted(options)) or 'none'})")
        return cls(family=family, **{k: v for k, v in kwargs.items() if k in common},
                   backbone=spec.options(**{k: v for k, v in kwargs.items() if k in options}))

    def to_dict(self) -> dict:
        """Flat JSON form (as in a run's config.json): family, the common fields and the family's options."""
        from mgr_tf.config import to_dict

        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "backbone"}
        return {**common, **to_dict(self.backbone)}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """The config from its `to_dict` form (as in a run's config.json)."""
        data = dict(data)
        family = data.pop("family", "cnn")
        if isinstance(data.get("backbone"), dict):
            data.update(data.pop("backbone"))
        return cls.of(family, **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def __getattr__(self, name):
        # Only called for names that are not fields: the family's options read as config attributes.
        if name.startswith("__"):
            raise AttributeError(name)
        backbone = self.__dict__.get("backbone")
        if backbone is not None and hasattr(backbone, name):
            return getattr(backbone, name)
        raise AttributeError(f"ModelConfig of family {self.__dict__.get('family')!r} has no option {name!r}")


def _options_from_dict(options_cls: type, data: dict):
    from mgr_tf.config import from_dict

    return from_dict(options_cls, data)
