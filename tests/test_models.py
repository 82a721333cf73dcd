"""Models: every family x head through the shared harness, masking, normalisation, transfer."""

from __future__ import annotations

import argparse
import dataclasses

import keras
import numpy as np
import pytest

from mgr_tf.cli import _arg_docs, add_dataclass_args, dataclass_from_args
from mgr_tf.models import (BACKBONES, ModelConfig, build_model, class_names_of, load_backbone_weights,
                           set_backbone_trainable, transfer_model)
from mgr_tf.models.layers import FixedLength, SpectrogramNormalization
from tests.model_harness import (BANDS, FRAMES, NUM_CLASSES, check_fit_step, check_output_structure,
                                 random_batch, run_all_checks)

FAMILIES = ("lstm", "cnn", "ast")
TINY = {
    "lstm": ModelConfig.of("lstm", lstm_units=(8,), lstm_frame_stride=2, dropout=0.1),
    "cnn": ModelConfig.of("cnn", cnn_channels=(4, 4, 8, 8), dropout=0.1),
    "ast": ModelConfig.of("ast", ast_dim=16, ast_depth=1, ast_heads=2, ast_patch=(8, 4), ast_stride=(8, 4),
                       dropout=0.1),
}


def tiny_model(family: str, task: str, **kwargs) -> keras.Model:
    rng = np.random.default_rng(0)
    return build_model(kwargs.pop("config", TINY[family]), task, num_bands=BANDS, frames=FRAMES,
                       num_classes=NUM_CLASSES, norm_mean=rng.random(BANDS) * 5, norm_std=rng.random(BANDS) + 2,
                       **kwargs)


def test_registry_covers_families():
    assert set(BACKBONES) == set(FAMILIES) == set(TINY) == set(TINY_SIZES)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task", ["genre", "multitask"])
def test_harness(family, task, tmp_path):
    # The LSTM serves any length; CNN/AST pad/crop in-graph, so other lengths work too.
    lengths = (FRAMES, 13, 45) if family == "lstm" else (FRAMES, 40)
    run_all_checks(tiny_model(family, task), task, tmp_path, export_lengths=lengths)


@pytest.mark.parametrize("family", FAMILIES)
def test_single_emotion_heads(family):
    for task in ("energy", "danceability"):
        check_output_structure(tiny_model(family, task), task)
    model = tiny_model(family, "valence")
    check_output_structure(model, "valence")
    check_fit_step(model, "valence")


@pytest.mark.parametrize("config", [
    ModelConfig.of("lstm", lstm_units=(6, 5), lstm_frame_stride=1),
    ModelConfig.of("lstm", lstm_units=(6,), lstm_frame_stride=3, lstm_bidirectional=True),
    ModelConfig.of("lstm", lstm_units=(6,), lstm_frame_stride=4, lstm_pooling="mean"),
], ids=["stacked", "bidirectional-stride3", "mean-stride4"])
def test_lstm_ignores_appended_padding(config):
    model = tiny_model("lstm", "multitask", config=config)
    x = random_batch(np.random.default_rng(3), 2, frames=23)
    padded = np.concatenate([x, np.zeros((2, 18, BANDS), np.float32)], axis=1)
    a, b = model({"spectrogram": x}), model({"spectrogram": padded})
    for name in a:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), atol=1e-6)
    # Padding inside a batch: a short clip padded next to a long one equals the clip alone.
    batch = np.concatenate([padded[:1], random_batch(np.random.default_rng(4), 1, frames=41)], axis=0)
    c = model({"spectrogram": batch})
    np.testing.assert_allclose(np.asarray(c["valence"])[0], np.asarray(a["valence"])[0], atol=1e-6)


def test_normalization_keeps_padding_zero_and_masks_it():
    mean, std = np.arange(BANDS, dtype=np.float32), np.full(BANDS, 2.0, np.float32)
    layer = SpectrogramNormalization(BANDS, mean, std)
    x = np.ones((1, 3, BANDS), np.float32)
    x[0, 2] = 0.0
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out[0, 0], (1.0 - mean) / std)
    np.testing.assert_array_equal(out[0, 2], 0.0)
    np.testing.assert_array_equal(np.asarray(layer.compute_mask(x)), [[True, True, False]])
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 2
    with pytest.raises(ValueError, match="expected 12 bands"):
        SpectrogramNormalization(BANDS, mean[:5])


def test_fixed_length_pads_at_end_and_crops_centre():
    x = np.arange(1, 11, dtype=np.float32).reshape(1, 10, 1)
    np.testing.assert_array_equal(np.asarray(FixedLength(4)(x))[0, :, 0], [4, 5, 6, 7])
    np.testing.assert_array_equal(np.asarray(FixedLength(4, crop="start")(x))[0, :, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(np.asarray(FixedLength(12)(x))[0, :, 0], list(range(1, 11)) + [0, 0])


def test_class_names_survive_save_load(tmp_path):
    names = ["a", "b", "c", "d"]
    model = tiny_model("cnn", "genre", class_names=names)
    model.save(tmp_path / "m.keras")
    assert class_names_of(keras.models.load_model(tmp_path / "m.keras")) == names
    with pytest.raises(ValueError, match="3 label names given for 4"):
        tiny_model("cnn", "genre", class_names=names[:3])


def test_transfer_copies_backbone_and_freezes():
    genre = tiny_model("cnn", "genre")
    # Move the BN statistics away from their initial values so a copy is detectable.
    genre.get_layer("block1_bn").moving_mean.assign(np.full(4, 0.7, np.float32))
    assert set(transfer_model(genre, "multitask", TINY["cnn"]).output) == {"valence", "energy", "danceability"}
    emotion = transfer_model(genre, "valence", TINY["cnn"])
    x = {"spectrogram": random_batch(np.random.default_rng(5), 2)}
    embed = lambda m: keras.Model(m.inputs, m.get_layer("embedding").output)(x)  # noqa: E731
    np.testing.assert_allclose(np.asarray(embed(emotion)), np.asarray(embed(genre)), atol=1e-6)
    assert emotion.get_layer("block1_conv") is not genre.get_layer("block1_conv")

    set_backbone_trainable(emotion, False)
    trainable = {w.path.split("/")[0] for w in emotion.trainable_weights}
    assert trainable == {"valence"}, trainable
    frozen_kernel = np.array(emotion.get_layer("block1_conv").kernel)
    check_fit_step(emotion, "valence", jit_compile=False)
    np.testing.assert_array_equal(np.array(emotion.get_layer("block1_conv").kernel), frozen_kernel)

    set_backbone_trainable(emotion, True)
    assert len(emotion.trainable_weights) > 6
    check_fit_step(emotion, "valence", jit_compile=False)
    assert not np.allclose(np.array(emotion.get_layer("block1_conv").kernel), frozen_kernel)


def test_transfer_rejects_non_genre_model():
    with pytest.raises(ValueError, match="needs a genre model"):
        transfer_model(tiny_model("cnn", "valence"), "energy", TINY["cnn"])
    with pytest.raises(ValueError, match="source task"):
        transfer_model(tiny_model("cnn", "genre"), "genre", TINY["cnn"])


def test_ast_weights_from_keras_file(tmp_path):
    source = tiny_model("ast", "genre")
    source.save(tmp_path / "ast.keras")
    config = dataclasses.replace(TINY["ast"], ast_weights=str(tmp_path / "ast.keras"))
    target = tiny_model("ast", "valence", config=config)
    np.testing.assert_array_equal(np.array(target.get_layer("encoder_1").weights[0]),
                                  np.array(source.get_layer("encoder_1").weights[0]))
    target.save_weights(tmp_path / "valence.weights.h5")
    other = tiny_model("ast", "valence")
    assert load_backbone_weights(other, tmp_path / "valence.weights.h5") > 0
    np.testing.assert_array_equal(np.array(other.get_layer("valence").kernel), np.array(target.get_layer("valence").kernel))
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        load_backbone_weights(target, tmp_path / "missing.keras")


def test_default_sizes_and_cli_flags():
    for family in FAMILIES:
        model = build_model(ModelConfig.of(family), "genre", num_bands=140, frames=1293)
        assert model.count_params() < 500_000, (family, model.count_params())
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, ModelConfig, prefix="model")
    args = parser.parse_args(["--model-family", "ast", "--model-ast-stride", "8", "8", "--model-cnn-channels", "8", "8"])
    config = dataclass_from_args(ModelConfig, args, prefix="model")
    assert config.ast_sizes()["stride"] == (8, 8) and config.cnn_channels == (8, 8)
    documented = _arg_docs(ModelConfig)
    assert all(documented.get(f.name) for f in dataclasses.fields(ModelConfig)), documented
    with pytest.raises(ValueError, match="family must be one of"):
        ModelConfig.of("rnn")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig.of("ast", ast_dim=30, ast_heads=4)


TINY_SIZES = {
    "lstm": ModelConfig.of("lstm", lstm_units=(8,), lstm_frame_stride=2),
    "cnn": ModelConfig.of("cnn", cnn_channels=(4, 4, 8, 8)),
    "ast": ModelConfig.of("ast", ast_dim=16, ast_depth=1, ast_heads=2, ast_patch=(8, 8), ast_stride=(8, 8)),
}


@pytest.mark.parametrize("task", ["genre", "valence", "energy", "danceability", "multitask"])
@pytest.mark.parametrize("family", FAMILIES)
def test_trains_a_step_on_make_dataset_output(family, task, tiny_corpus):
    """Every family x head takes the real pipeline's batches (with the training code's compile)."""
    from mgr_tf.data import dataset_info, make_dataset
    from mgr_tf.config import DataConfig
    from mgr_tf.training.run import TrainConfig, compile_for_task

    data = DataConfig(data_dir=str(tiny_corpus), task=task, beat=True, batch_size=8,
                      variable_length=family == "lstm")
    info = dataset_info(data)
    model = build_model(TINY_SIZES[family], task, num_bands=info.num_bands, frames=info.frames,
                        num_classes=info.num_classes, norm_mean=info.norm_mean, norm_std=info.norm_std)
    fit_model = compile_for_task(model, data, TrainConfig(), 1e-3)
    before = [w.copy() for w in model.get_weights()]
    history = fit_model.fit(make_dataset(data, "train").take(1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
