"""The TF Serving contract of exported models, checked with TF Serving's own request formats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mgr_tf.core.published import EMOTIONS
from mgr_tf.serving.export import find_ops, next_version, resolve_model_dir
from mgr_tf.serving.requests import RequestError, grpc_predict, load_signature, rest_predict
from tests.conftest import export_dir


def _random_spectrogram(frames, bands=140, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(-30, 10, size=(frames, bands)).astype(np.float32)
    x[:, 128:] = rng.uniform(0, 1, size=(frames, bands - 128))
    return x


def test_export_layout_is_what_tf_serving_loads(genre_run):
    export = export_dir(genre_run)
    assert export.name == "1" and export.parent.name == "genre"
    for name in ("saved_model.pb", "fingerprint.pb", "variables", "assets/labels.txt", "assets/config.json",
                 "assets/metrics.json"):
        assert (export / name).exists(), name
    assert not [p for p in export.parent.iterdir() if p.name.startswith(".tmp")]
    labels = (export / "assets" / "labels.txt").read_text().split()
    assert labels[0] == "Rock" and len(labels) == 10
    assert resolve_model_dir(export.parent) == export


def test_next_export_is_the_next_version_written_atomically(genre_run, tmp_path):
    from mgr_tf.serving.export import export_run

    run_dir, _ = genre_run
    root = tmp_path / "models"
    first = export_run(run_dir, name="m", root=str(root))
    (root / "m" / "7").mkdir()  # an unrelated higher version folder (not a SavedModel)
    second = export_run(run_dir, name="m", root=str(root))
    assert first.name == "1" and second.name == "8" and next_version(root / "m") == 9
    assert sorted(p.name for p in (root / "m").iterdir()) == ["1", "7", "8"]


def test_genre_signature_inputs_and_outputs(genre_run):
    signature = load_signature(export_dir(genre_run))
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["spectrogram"]
    assert inputs["spectrogram"].shape.as_list() == [None, None, 140]
    assert inputs["spectrogram"].dtype == tf.float32
    out = signature(spectrogram=tf.constant(np.stack([_random_spectrogram(300), _random_spectrogram(300, seed=1)])))
    assert set(out) == {"probabilities", "genre"}
    assert out["probabilities"].shape == (2, 10)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
    assert out["genre"].dtype == tf.string and out["genre"].shape == (2,)


def test_rest_row_and_columnar_formats(genre_run):
    signature = load_signature(export_dir(genre_run))
    a, b = _random_spectrogram(256), _random_spectrogram(256, seed=1)
    row = rest_predict(signature, json.dumps({"signature_name": "serving_default",
                                              "instances": [{"spectrogram": a.tolist()}, b.tolist()]}))
    assert list(row) == ["predictions"] and len(row["predictions"]) == 2
    first = row["predictions"][0]
    assert set(first) == {"probabilities", "genre"} and len(first["probabilities"]) == 10
    assert isinstance(first["genre"], str)
    col = rest_predict(signature, {"inputs": {"spectrogram": [a.tolist(), b.tolist()]}})
    assert list(col) == ["outputs"] and set(col["outputs"]) == {"probabilities", "genre"}
    np.testing.assert_allclose(col["outputs"]["probabilities"][1], row["predictions"][1]["probabilities"], atol=1e-6)
    assert col["outputs"]["genre"] == [p["genre"] for p in row["predictions"]]


@pytest.mark.parametrize("body, message", [
    ({"instances": [[[0.0] * 140] * 5], "inputs": {}}, "exactly one of"),
    ({"instances": [[[0.0] * 12] * 5]}, "does not match"),
    ({"instances": [{"waveform": [0.0]}]}, "do not match"),
    ({"instances": [[[0.0] * 140] * 5, [[0.0] * 140] * 6]}, "ragged"),
])
def test_rest_requests_tf_serving_would_reject(genre_run, body, message):
    signature = load_signature(export_dir(genre_run))
    with pytest.raises(RequestError, match=message):
        rest_predict(signature, body)


def test_grpc_predict_request(genre_run):
    from tensorflow_serving.apis import predict_pb2

    signature = load_signature(export_dir(genre_run))
    x = np.stack([_random_spectrogram(200), _random_spectrogram(200, seed=2)])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "genre"
    request.model_spec.signature_name = "serving_default"
    request.inputs["spectrogram"].CopyFrom(tf.make_tensor_proto(x))
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # over the wire
    response = grpc_predict(signature, request)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    genres = tf.make_ndarray(response.outputs["genre"])
    assert probabilities.shape == (2, 10) and genres.shape == (2,)
    direct = signature(spectrogram=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, direct, atol=1e-6)
    assert response.model_spec.name == "genre"


def test_saved_model_cli_lists_the_signature(genre_run):
    cli = shutil.which("saved_model_cli") or str(Path(sys.executable).parent / "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", str(export_dir(genre_run)), "--all"], capture_output=True,
                         text=True, check=True).stdout
    assert "signature_def['serving_default']" in out
    assert "inputs['spectrogram']" in out and "outputs['probabilities']" in out and "outputs['genre']" in out


def test_lstm_multitask_export_has_no_cudnn_ops_and_takes_any_length(multitask_run):
    export = export_dir(multitask_run)
    assert find_ops(export, "Cudnn") == set()
    signature = load_signature(export)
    short = _random_spectrogram(40)
    padded = np.concatenate([short, np.zeros((30, 140), np.float32)])
    a = signature(spectrogram=tf.constant(short[None]))
    b = signature(spectrogram=tf.constant(padded[None]))
    assert set(a) == set(EMOTIONS)
    for name in EMOTIONS:
        assert a[name].shape == (1,)
        assert 0.0 <= float(a[name][0]) <= 1.0
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), atol=1e-5)  # zero padding is masked
    row = rest_predict(signature, {"instances": [short.tolist()]})
    assert set(row["predictions"][0]) == set(EMOTIONS)


def test_beat_model_has_no_waveform_signature_and_full_model_has_one(genre_run, multitask_run):
    full = tf.saved_model.load(str(export_dir(genre_run)))
    beat = tf.saved_model.load(str(export_dir(multitask_run)))
    assert "serving_waveform" in full.signatures and "serving_waveform" not in beat.signatures
    config = json.loads((export_dir(genre_run) / "assets" / "config.json").read_text())
    assert config["signatures"] == ["serving_default", "serving_waveform"]


def test_waveform_signature_matches_features_computed_outside(genre_run):
    from mgr_tf.core.config import FeatureConfig
    from mgr_tf.features.spectral import fused_features

    export = export_dir(genre_run)
    loaded = tf.saved_model.load(str(export))
    sr = FeatureConfig().sample_rate
    t = np.arange(int(3 * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).normal(size=t.size)).astype(np.float32)
    via_wave = loaded.signatures["serving_waveform"](waveform=tf.constant(wave[None]))
    spec = fused_features(wave, FeatureConfig()).numpy()
    via_spec = loaded.signatures["serving_default"](spectrogram=tf.constant(spec[None]))
    np.testing.assert_allclose(via_wave["probabilities"].numpy(), via_spec["probabilities"].numpy(), atol=1e-4)
