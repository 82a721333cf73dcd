"""Extending the package from outside it: a new backbone, a new task and a new feature type, registered in this
file only, go through training, reporting and export (`python -m mgr_tf.train`) with no change to the package."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf

from mgr_tf.features.types import FEATURE_TYPES, FeatureType, register_feature_type
from mgr_tf.models import BACKBONES, Backbone, model_config, register_backbone
from mgr_tf.models.build import load_keras_model
from mgr_tf.serving.requests import load_signature, rest_predict
from mgr_tf.tasks import TASKS, RegressionTask, register_task
from tests.conftest import WHOLE_FUSED
from tests.model_harness import check_output_structure, tiny_model

# ------------------------------------------------------------------------------------- a new backbone


@dataclass(frozen=True)
class MeanDenseOptions:
    """Options of the mean-dense backbone (defined by this test only).

    Args:
        mean_dense_units: units of the ReLU dense layer on the time-mean of the real frames.
    """

    mean_dense_units: int = 8

    def __post_init__(self):
        if self.mean_dense_units < 1:
            raise ValueError(f"ModelConfig: mean_dense_units must be >= 1, got {self.mean_dense_units}")


def build_mean_dense_backbone(config, x, *, frames: int):
    """A dense layer on the masked time-mean (the normalisation layer's mask hides the padding)."""
    del frames  # any length: the mean ignores padded frames
    x = keras.layers.GlobalAveragePooling1D(name="time_mean")(x)
    return keras.layers.Dense(config.mean_dense_units, activation="relu", name="mean_dense")(x)


MEAN_DENSE = Backbone("mean_dense", "test only: a dense layer on the masked time-mean", MeanDenseOptions,
                      build_mean_dense_backbone, variable_length=True, test_options={"mean_dense_units": 4})


@pytest.fixture
def mean_dense_backbone():
    register_backbone(MEAN_DENSE)
    try:
        yield MEAN_DENSE
    finally:
        BACKBONES.pop(MEAN_DENSE.name, None)


# ------------------------------------------------------------------------------------- a new task


class ArousalTask(RegressionTask):
    """Arousal: the mean of energy and danceability of the multitask data, one sigmoid output."""

    def __init__(self):
        super().__init__("arousal", ("arousal",))

    @property
    def columns(self) -> tuple[str, ...]:
        return ("energy", "danceability")  # the label columns it reads ("arousal" is derived, not stored)

    def targets(self, example, label_map):
        energy = tf.cast(example["energy"], tf.float32)
        danceability = tf.cast(example["danceability"], tf.float32)
        return {"arousal": tf.reshape((energy + danceability) / 2.0, [1])}


@pytest.fixture
def arousal_task():
    task = register_task(ArousalTask())
    try:
        yield task
    finally:
        TASKS.pop(task.name, None)


# ------------------------------------------------------------------------------------- tests


def _train(argv, tmp_path, name):
    from mgr_tf.train import main

    run_dir = tmp_path / "run"
    assert main([*WHOLE_FUSED, *argv, "--epochs", "1", "--no-baseline", "--batch-size", "16", "--out", str(run_dir),
                 "--export", name, "--export-root", str(tmp_path / "exports")]) == 0
    assert (run_dir / "report.json").is_file() and (run_dir / "config.json").is_file()
    return run_dir, json.loads((run_dir / "report.json").read_text())


def _spectrograms(frames=(120, 80), bands=140, seed=0):
    """Two raw-looking clips of different lengths, zero-padded into one batch (as the pipeline pads)."""
    rng = np.random.default_rng(seed)
    batch = np.zeros((len(frames), max(frames), bands), np.float32)
    for i, n in enumerate(frames):
        batch[i, :n] = rng.normal(-30.0, 10.0, (n, bands))
        batch[i, :n, 128:] = rng.uniform(0.0, 1.0, (n, bands - 128))
    return batch


def test_registered_backbone_and_task_build_through_the_shared_harness(mean_dense_backbone, arousal_task):
    assert model_config("mean_dense").mean_dense_units == 8
    for task in ("genre", "arousal"):
        check_output_structure(tiny_model("mean_dense", task), task)
    assert tiny_model("mean_dense", "arousal").output["arousal"].shape == (None, 1)


@pytest.mark.slow
def test_new_backbone_trains_saves_and_exports(mean_dense_backbone, tiny_corpus, tmp_path):
    run_dir, report = _train(["--task", "genre", "--model", "mean_dense", "--mean-dense-units", "4",
                              "--data-dir", str(tiny_corpus)], tmp_path, "mean_dense_genre")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["family"] == "mean_dense" and config["model"]["mean_dense_units"] == 4
    assert report["model"] == "mean_dense" and report["metrics"]["genre"]["num_examples"] > 0
    model = load_keras_model(run_dir)
    assert model.get_layer("mean_dense").units == 4

    export = tmp_path / "exports" / "mean_dense_genre" / "1"
    assert report["export_dir"] == str(export) and (export / "saved_model.pb").is_file()
    signature = load_signature(export)
    x = _spectrograms()
    answer = rest_predict(signature, {"instances": [{"spectrogram": x[0].tolist()}]})
    labels = (export / "assets" / "labels.txt").read_text().split()
    assert answer["predictions"][0]["genre"] in labels
    served = signature(spectrogram=tf.constant(x))
    expected = np.asarray(model({"spectrogram": x}, training=False)["genre"])
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(answer["predictions"][0]["probabilities"], expected[0], atol=1e-5)
    assert [labels[i] for i in expected.argmax(-1)] == [g.decode() for g in served["genre"].numpy()]


@pytest.mark.slow
def test_new_task_trains_saves_and_exports(arousal_task, tiny_corpus, tmp_path):
    from mgr_tf.core.config import DataConfig, from_dict
    from mgr_tf.data import make_dataset

    run_dir, report = _train(["--task", "arousal", "--model", "summary", "--data-dir", str(tiny_corpus)],
                             tmp_path, "arousal")
    assert report["task"] == "arousal" and set(report["metrics"]) == {"arousal"}
    assert set(report["headline"]) == {"arousal Spearman", "arousal R²"}

    # The targets (of the split the report scores) are the mean of energy and danceability of the same clips.
    data = from_dict(DataConfig, json.loads((run_dir / "config.json").read_text())["data"])
    assert data.task == "arousal"

    def targets_by_id(config, *names):
        pairs = make_dataset(config, report["eval_split"], with_ids=True).unbatch().as_numpy_iterator()
        return {f["track_id"].decode(): [float(t[n][0]) for n in names] for f, t in pairs}

    arousal = targets_by_id(data, "arousal")
    emotions = targets_by_id(dataclasses.replace(data, task="multitask"), "energy", "danceability")
    assert arousal and set(arousal) == set(emotions)
    for track, value in arousal.items():
        assert value == pytest.approx([np.mean(emotions[track])], abs=1e-6)
    assert report["metrics"]["arousal"]["num_examples"] == len(arousal)

    # The export answers with one arousal value per clip, equal to the saved model's.
    model = load_keras_model(run_dir)
    signature = load_signature(report["export_dir"])
    x = _spectrograms()
    served = signature(spectrogram=tf.constant(x))
    assert set(served) == {"arousal"} and served["arousal"].shape == (2,)
    expected = np.asarray(model({"spectrogram": x}, training=False)["arousal"]).reshape(-1)
    np.testing.assert_allclose(served["arousal"].numpy(), expected, atol=1e-5)
    assert np.all((expected > 0.0) & (expected < 1.0))
    answer = rest_predict(signature, {"inputs": {"spectrogram": x.tolist()}})
    np.testing.assert_allclose(answer["outputs"], expected, atol=1e-5)


# ------------------------------------------------------------------------------------- a new feature type


BASS = FeatureType("bass", "test only: the 32 lowest log-mel bands", lambda cfg: 32, lambda x, cfg: x[..., :32],
                   lambda cfg: 32)


@pytest.fixture
def bass_features():
    register_feature_type(BASS)
    try:
        yield BASS
    finally:
        FEATURE_TYPES.pop(BASS.name, None)


@pytest.mark.slow
def test_new_feature_type_trains_and_serves_from_the_stored_arrays(bass_features, tiny_corpus, tmp_path):
    """A feature type registered here: the flags offer it, the pipeline derives it, the export's serving_fused
    derives it in the graph from the stored fused arrays."""
    from mgr_tf.training.flags import build_parser

    assert "bass" in {a.dest: a for a in build_parser()._actions}["features"].choices
    run_dir, report = _train(["--task", "genre", "--model", "summary", "--features", "bass",
                              "--data-dir", str(tiny_corpus)], tmp_path, "bass")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["feature_type"]["name"] == "bass" and config["num_bands"] == 32
    fused = tf.constant(_spectrograms())
    served = tf.saved_model.load(report["export_dir"]).signatures
    np.testing.assert_allclose(served["serving_fused"](spectrogram=fused)["probabilities"].numpy(),
                               served["serving_default"](spectrogram=fused[..., :32])["probabilities"].numpy(),
                               atol=1e-6)
