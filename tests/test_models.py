"""Models: every registered backbone x task through the shared harness, golden sizes and outputs, masking,
normalisation, transfer."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from mgr_tf.models import BACKBONES, model_config, model_config_from_dict
from mgr_tf.models.build import build_model, class_names_of, load_backbone_weights, set_backbone_trainable, transfer_model
from mgr_tf.models.layers import FixedLength, LabelledDense, SpectrogramNormalization
from mgr_tf.tasks import TASKS, task_for
from tests.model_harness import (
    BANDS,
    check_fit_step,
    check_output_structure,
    family_bands,
    random_batch,
    run_all_checks,
    serving_lengths,
    tiny_config,
    tiny_model,
)

FAMILIES = tuple(BACKBONES)
# Families that read the fused arrays (the synthetic corpus); musicnn reads its own stored input, and its
# pipeline, training and export are tested from audio in tests/test_musicnn_backbone.py.
FUSED_FAMILIES = tuple(name for name, spec in BACKBONES.items() if not spec.input_bands)
TASK_NAMES = tuple(TASKS)

# Parameters of the default-size genre model on the full fused input (140 bands, 1293 frames, 10 classes),
# normalisation statistics included. A change here is a change of the published architecture.
DEFAULT_GENRE_PARAMS = {"lstm": 53_410, "cnn": 25_674, "ast": 158_562, "summary": 3_651,
                        "musicnn": 1_569_061}  # musicnn: the default pair, MSD_musicnn + MTT_musicnn

# keras-hub's expected_partial_output: seed 0, the tiny model, a seeded input; the first 5 values of the
# embedding (backbone output) of the first example, and the first 5 genre probabilities (batch-major).
# Measured on x86-64 CPU, identical with oneDNN on and off.
GOLDEN_EMBEDDING = {
    "lstm": [-0.253721, -0.023029, 0.352944, 0.562066, -0.378855],
    "cnn": [0.180051, 0.0, 0.059263, 0.096091, 0.040303],
    "ast": [2.020056, -0.374474, -0.349607, -0.516304, 0.620779],
    "summary": [0.90389, 1.835817, 1.725428, 1.887706, 0.206549],  # standardised by an unadapted Normalization
    "musicnn": [0.410573, 0.0, 1.218162, 1.274503, 0.0],  # random weights (--no-musicnn-pretrained); MSD's part
}
GOLDEN_GENRE = {
    "lstm": [0.409068, 0.280187, 0.126872, 0.183874, 0.378713],
    "cnn": [0.236737, 0.240714, 0.283857, 0.238692, 0.242615],
    "ast": [0.574667, 0.022278, 0.149635, 0.25342, 0.451901],
    "summary": [0.008443, 0.123681, 0.764111, 0.103765, 0.011171],
    "musicnn": [0.035131, 0.32107, 0.630149, 0.01365, 0.03661],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_golden_tables_cover_every_backbone(family):
    assert family in DEFAULT_GENRE_PARAMS and family in GOLDEN_EMBEDDING and family in GOLDEN_GENRE, (
        f"new backbone {family!r}: add its golden numbers (see the tables at the top of this file)")


@pytest.mark.parametrize("family", FAMILIES)
def test_default_size_parameter_count(family):
    spec = BACKBONES[family]
    # A pretrained encoder's architecture is fixed: its test options only skip the weights download.
    config = model_config(family, **(spec.test_options if spec.input_bands else {}))
    model = build_model(config, task_for("genre"), num_bands=spec.input_bands or 140, frames=1293, num_classes=10)
    assert model.count_params() == DEFAULT_GENRE_PARAMS.get(family), model.count_params()


@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_partial_output(family):
    keras.utils.set_random_seed(0)
    model = tiny_model(family, "genre")
    x = {"spectrogram": random_batch(np.random.default_rng(0), 2, bands=family_bands(family))}
    embedding = keras.Model(model.inputs, model.get_layer("embedding").output)(x, training=False)
    np.testing.assert_allclose(np.asarray(embedding)[0, :5], GOLDEN_EMBEDDING.get(family), atol=1e-4)
    genre = np.asarray(model(x, training=False)["genre"]).reshape(-1)
    np.testing.assert_allclose(genre[:5], GOLDEN_GENRE.get(family), atol=1e-4)


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("family", FAMILIES)
def test_output_structure(family, task):
    check_output_structure(tiny_model(family, task), task)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("family", FAMILIES)
def test_harness(family, task, tmp_path):
    run_all_checks(tiny_model(family, task), task, tmp_path, export_lengths=serving_lengths(family))


@pytest.mark.parametrize("family", FAMILIES)
def test_config_json_round_trip(family):
    config = tiny_config(family)
    assert model_config_from_dict(json.loads(json.dumps(config.to_dict()))) == config


VARIABLE_LENGTH_CONFIGS = [pytest.param(tiny_config(name), id=name)
                           for name, spec in BACKBONES.items() if spec.variable_length] + [
    pytest.param(model_config("lstm", lstm_units=(6, 5), lstm_frame_stride=1), id="lstm-stacked"),
    pytest.param(model_config("lstm", lstm_units=(6,), lstm_frame_stride=3, lstm_bidirectional=True),
                 id="lstm-bidirectional-stride3"),
    pytest.param(model_config("lstm", lstm_units=(6,), lstm_frame_stride=4, lstm_pooling="mean"),
                 id="lstm-mean-stride4"),
]


@pytest.mark.parametrize("config", VARIABLE_LENGTH_CONFIGS)
def test_variable_length_backbones_ignore_appended_padding(config):
    model = tiny_model(config.family, "multitask", config=config)
    x = random_batch(np.random.default_rng(3), 2, frames=23)
    padded = np.concatenate([x, np.zeros((2, 18, BANDS), np.float32)], axis=1)
    a, b = model({"spectrogram": x}), model({"spectrogram": padded})
    for name in a:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), atol=1e-6)
    # Padding inside a batch: a short clip padded next to a long one equals the clip alone.
    batch = np.concatenate([padded[:1], random_batch(np.random.default_rng(4), 1, frames=41)], axis=0)
    c = model({"spectrogram": batch})
    for name in a:
        np.testing.assert_allclose(np.asarray(c[name])[0], np.asarray(a[name])[0], atol=1e-6)
    # ... while changing a real frame changes the output (the comparison above can fail).
    changed = x.copy()
    changed[:, 5] += 3.0
    d = model({"spectrogram": changed})
    assert any(not np.allclose(np.asarray(d[name]), np.asarray(a[name]), atol=1e-6) for name in a)


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
    # The class names set the number of classes (num_classes is for models built without names).
    three = tiny_model("cnn", "genre", class_names=names[:3])
    assert class_names_of(three) == names[:3] and three.output["genre"].shape[-1] == 3
    with pytest.raises(ValueError, match="3 label names given for 4"):
        LabelledDense(4, labels=names[:3])


def test_transfer_copies_backbone_and_freezes():
    config = tiny_config("cnn")
    genre = tiny_model("cnn", "genre")
    # Move the BN statistics away from their initial values so a copy is detectable.
    first_bn = genre.get_layer("block1_bn")
    first_bn.moving_mean.assign(np.full(first_bn.moving_mean.shape, 0.7, np.float32))
    assert set(transfer_model(genre, task_for("multitask"), config).output) == set(task_for("multitask").outputs)
    emotion = transfer_model(genre, task_for("valence"), config)
    x = {"spectrogram": random_batch(np.random.default_rng(5), 2)}
    embed = lambda m: keras.Model(m.inputs, m.get_layer("embedding").output)(x)  # noqa: E731
    np.testing.assert_allclose(np.asarray(embed(emotion)), np.asarray(embed(genre)), atol=1e-6)
    assert emotion.get_layer("block1_conv") is not genre.get_layer("block1_conv")

    set_backbone_trainable(emotion, False)
    trainable = {w.path.split("/")[0] for w in emotion.trainable_weights}
    assert trainable == {"valence"}, trainable
    set_backbone_trainable(emotion, True)
    assert {w.path.split("/")[0] for w in emotion.trainable_weights} >= {"valence", "block1_conv", "block1_bn"}


@pytest.mark.slow
def test_transfer_fine_tuning_trains_the_backbone_only_when_unfrozen():
    emotion = transfer_model(tiny_model("cnn", "genre"), task_for("valence"), tiny_config("cnn"))
    set_backbone_trainable(emotion, False)
    frozen_kernel = np.array(emotion.get_layer("block1_conv").kernel)
    check_fit_step(emotion, "valence", jit_compile=False)
    np.testing.assert_array_equal(np.array(emotion.get_layer("block1_conv").kernel), frozen_kernel)

    set_backbone_trainable(emotion, True)
    assert len(emotion.trainable_weights) > 6
    check_fit_step(emotion, "valence", jit_compile=False)
    assert not np.allclose(np.array(emotion.get_layer("block1_conv").kernel), frozen_kernel)


def test_transfer_rejects_non_genre_model():
    with pytest.raises(ValueError, match="needs a genre model"):
        transfer_model(tiny_model("cnn", "valence"), task_for("energy"), tiny_config("cnn"))
    with pytest.raises(ValueError, match="source task"):
        transfer_model(tiny_model("cnn", "genre"), task_for("genre"), tiny_config("cnn"))


def test_ast_weights_from_keras_file(tmp_path):
    source = tiny_model("ast", "genre")
    source.save(tmp_path / "ast.keras")
    target = tiny_model("ast", "valence", config=tiny_config("ast", ast_weights=str(tmp_path / "ast.keras")))
    np.testing.assert_array_equal(np.array(target.get_layer("encoder_1").weights[0]),
                                  np.array(source.get_layer("encoder_1").weights[0]))
    target.save_weights(tmp_path / "valence.weights.h5")
    other = tiny_model("ast", "valence")
    assert load_backbone_weights(other, tmp_path / "valence.weights.h5") > 0
    np.testing.assert_array_equal(np.array(other.get_layer("valence").kernel),
                                  np.array(target.get_layer("valence").kernel))
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        load_backbone_weights(target, tmp_path / "missing.keras")


def test_training_cli_flags_make_the_model_config():
    from mgr_tf.models.ast import ASTOptions
    from mgr_tf.training.flags import build_parser, configs_from_args

    args = build_parser().parse_args(["--model", "ast", "--ast-stride", "8", "8", "--cnn-channels", "8", "8",
                                      "--dropout", "0.2"])
    _, config, _, _ = configs_from_args(args)
    # Only the chosen family's options reach the config; the CNN flag is parsed and ignored.
    assert config == model_config("ast", ast_stride=(8, 8), dropout=0.2), config
    assert isinstance(config.backbone, ASTOptions) and config.ast_sizes()["stride"] == (8, 8)
    with pytest.raises(ValueError, match="not an option of the ast backbone"):
        model_config("ast", cnn_channels=(8, 8))
    with pytest.raises(ValueError, match="divisible"):
        model_config("ast", ast_dim=30, ast_heads=4)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("family", FUSED_FAMILIES)
def test_trains_a_step_on_make_dataset_output(family, task, tiny_corpus):
    """Every family x task takes the real pipeline's batches (with the training code's compile)."""
    from mgr_tf.core.config import DataConfig, RegressionConfig
    from mgr_tf.data import dataset_info, make_dataset
    from mgr_tf.training.fit import compile_for

    data = DataConfig(data_dir=str(tiny_corpus), task=task, beat=True, batch_size=8,
                      variable_length=BACKBONES[family].variable_length)
    info = dataset_info(data)
    model = build_model(model_config(family, **BACKBONES[family].test_options), task_for(task), num_bands=info.num_bands,
                        frames=info.frames, num_classes=info.num_classes, norm_mean=info.norm_mean,
                        norm_std=info.norm_std)
    fit_model = compile_for(task_for(task), model, RegressionConfig(), 1e-3)
    before = [w.copy() for w in model.get_weights()]
    history = fit_model.fit(make_dataset(data, "train").take(1), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
