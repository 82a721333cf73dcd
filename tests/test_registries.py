"""The registries (tasks, backbones, feature types) are complete and self-describing; unknown names fail clearly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from mgr_tf.core.cli import _arg_docs
from mgr_tf.core.config import FeatureConfig, ModelConfig
from mgr_tf.data.layout import LABEL_KINDS
from mgr_tf.features.types import FEATURE_TYPES, get_feature_type
from mgr_tf.models import BACKBONES, model_config
from mgr_tf.tasks import TASKS, get_task, task_for


@pytest.mark.parametrize("name", list(TASKS))
def test_task_declares_outputs_monitor_and_label_kind(name):
    task = task_for(name)  # a task of the data's targets is bound to them (here: the published three)
    assert task.name == name
    assert task.outputs and all(isinstance(o, str) and o for o in task.outputs), task.outputs
    assert len(set(task.outputs)) == len(task.outputs), task.outputs
    quantity, mode = task.monitor
    assert quantity.startswith("val_") and mode in ("min", "max"), task.monitor
    assert task.label_kind in LABEL_KINDS, task.label_kind
    assert set(task.target_shapes()) == set(task.outputs)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_options_are_documented_for_help(name):
    spec = BACKBONES[name]
    assert spec.name == name and spec.description
    assert dataclasses.is_dataclass(spec.options)
    documented = _arg_docs(spec.options)
    missing = [f.name for f in dataclasses.fields(spec.options) if not documented.get(f.name)]
    assert not missing, f"{spec.options.__name__}: no Args: entry for {missing}"
    # Its test sizes are valid options.
    assert model_config(name, **spec.test_options).family == name


def test_model_config_common_fields_are_documented():
    documented = _arg_docs(ModelConfig)
    assert all(documented.get(f.name) for f in dataclasses.fields(ModelConfig)), documented


@pytest.mark.parametrize("name", list(FEATURE_TYPES))
def test_feature_type_derives_its_band_count(name):
    cfg = FeatureConfig()
    spec = get_feature_type(name)
    bands = spec.bands(cfg)
    assert cfg.n_mels + cfg.n_chroma == 140  # the fused layout the (1, 10, 140) input stands for
    # A stored encoder input (musicnn) is derived from its own stored array, of its own band count.
    stored = bands if spec.stored else 140
    fused = np.random.default_rng(0).normal(-20.0, 10.0, (1, 10, stored)).astype(np.float32)
    assert np.asarray(spec.derive(fused, cfg)).shape == (1, 10, bands)
    assert tuple(spec.derive(tf.constant(fused), cfg).shape) == (1, 10, bands)  # in graph form too
    assert 0 <= spec.db_bands(cfg) <= bands


@pytest.mark.parametrize("name", [n for n, spec in FEATURE_TYPES.items() if spec.stored])
def test_stored_feature_types_compute_from_audio_and_serve_waveforms(name):
    cfg = FeatureConfig()
    spec = get_feature_type(name)
    clip = (0.1 * np.random.default_rng(0).standard_normal(2 * cfg.sample_rate)).astype(np.float32)
    stored = spec.from_audio(clip, cfg)
    assert stored.dtype == np.float32 and stored.ndim == 2 and stored.shape[1] == spec.bands(cfg)
    rate = spec.sample_rate(cfg)
    layer = spec.waveform_layer(cfg)
    served = np.asarray(layer(tf.constant(np.zeros((1, 2 * rate), np.float32))))
    assert served.shape == (1, stored.shape[0], spec.bands(cfg))  # 2 s at its own rate: as many frames


def test_training_cli_choices_are_the_registries():
    from mgr_tf.training.flags import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    # --task also takes the name of any regression target of the data, so its value is checked by the plan;
    # its help lists the registered tasks.
    assert actions["task"].choices is None and all(name in actions["task"].help for name in TASKS)
    assert actions["model"].choices == ["auto", *BACKBONES]  # auto: the encoder where the root holds its input
    assert actions["features"].choices == list(FEATURE_TYPES)


@pytest.mark.parametrize("lookup, known", [
    (get_task, TASKS),
    (model_config, BACKBONES),
    (get_feature_type, FEATURE_TYPES),
], ids=["task", "backbone", "feature_type"])
def test_unknown_names_raise_naming_the_known_ones(lookup, known):
    with pytest.raises(ValueError, match="'nope'") as info:
        lookup("nope")
    message = str(info.value)
    assert all(repr(name) in message for name in known), message
