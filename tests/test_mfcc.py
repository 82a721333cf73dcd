"""The mfcc feature type: librosa parity (golden: librosa.feature.mfcc on the same log-mel) and registry wiring."""

from __future__ import annotations

import numpy as np
import pytest

from mgr_tf.core.config import DataConfig, FeatureConfig
from mgr_tf.features.types import FEATURE_TYPES, dct_matrix, derive, num_bands


def _fused(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A (time, 140) fused array whose mel rows are librosa's dB mel spectrogram of a chord with noise."""
    import librosa

    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) + 0.05 * rng.normal(size=t.size)
    mel = librosa.feature.melspectrogram(y=y.astype(np.float32), sr=sr, n_fft=2048, hop_length=512, n_mels=128)
    log_mel = librosa.power_to_db(mel, top_db=80.0)  # (128, time), dB
    chroma = rng.uniform(0, 1, (12, log_mel.shape[1]))
    return np.concatenate([log_mel, chroma]).T.astype(np.float32)


@pytest.mark.parametrize("n_mfcc", [13, 20, 40])
def test_mfcc_matches_librosa(n_mfcc):
    import librosa
    import tensorflow as tf

    fused = _fused()
    expected = librosa.feature.mfcc(S=fused[:, :128].T, n_mfcc=n_mfcc).T  # (time, n_mfcc)
    cfg = FeatureConfig(n_mfcc=n_mfcc)
    from_numpy = derive("mfcc", fused, cfg)
    from_tf = derive("mfcc", tf.constant(fused), cfg).numpy()
    traced = tf.function(lambda x: derive("mfcc", x, cfg))(tf.constant(fused[None]))[0].numpy()
    for got in (from_numpy, from_tf, traced):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)


def test_mfcc_band_count_follows_n_mfcc():
    assert "mfcc" in FEATURE_TYPES
    assert num_bands("mfcc", FeatureConfig(n_mfcc=13)) == 13
    assert num_bands("mfcc") == 20
    assert DataConfig(features="mfcc", n_mfcc=13).n_mfcc == 13


def test_dct_matrix_is_orthonormal_dct_ii():
    from scipy.fft import dct

    basis = dct_matrix(128, 128)
    np.testing.assert_allclose(basis.T @ basis, np.eye(128), atol=1e-5)
    x = np.random.default_rng(1).normal(size=(5, 128))
    np.testing.assert_allclose(x @ dct_matrix(128, 20), dct(x, type=2, norm="ortho")[:, :20], atol=1e-4)
    with pytest.raises(ValueError, match="n_mfcc"):
        dct_matrix(128, 129)


def test_mfcc_derives_in_keras_functional_graph():
    import keras

    x = keras.Input((None, 140))
    assert tuple(derive("mfcc", x, FeatureConfig(n_mfcc=13)).shape) == (None, None, 13)


@pytest.mark.slow
def test_train_mfcc_exports_waveform_signature(tiny_corpus, tmp_path):
    from mgr_tf.serving.requests import load_signature
    from tests.conftest import TINY_CNN, export_dir, run_train

    run = run_train([*TINY_CNN, "--data-dir", str(tiny_corpus), "--features", "mfcc", "--n-mfcc", "13", "--epochs", "1"],
                    tmp_path, name="mfcc", export="mfcc")
    assert run[1]["metrics"]["genre"]["num_examples"] > 0
    model_dir = export_dir(run)
    assert tuple(load_signature(model_dir).structured_input_signature[1]["spectrogram"].shape) == (None, None, 13)
    waveform = load_signature(model_dir, "serving_waveform")
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(22050 * 3) / 22050)  # silence is refused by the signature
    out = waveform(waveform=tone[None].astype(np.float32))
    assert out["probabilities"].shape == (1, len(run[1]["class_names"]))


@pytest.mark.slow
def test_mfcc_export_also_takes_the_stored_fused_arrays(tiny_corpus, tmp_path):
    import tensorflow as tf

    from mgr_tf.core.config import FeatureConfig
    from tests.conftest import TINY_CNN, export_dir, run_train

    run = run_train([*TINY_CNN, "--data-dir", str(tiny_corpus), "--features", "mfcc", "--epochs", "1"], tmp_path,
                    export="mfcc_fused")
    loaded = tf.saved_model.load(str(export_dir(run)))
    assert set(loaded.signatures) == {"serving_default", "serving_waveform", "serving_fused"}
    fused = np.random.default_rng(0).normal(-30, 10, size=(2, 90, 140)).astype(np.float32)
    mfcc = derive("mfcc", fused, FeatureConfig())
    direct = loaded.signatures["serving_default"](spectrogram=tf.constant(mfcc, tf.float32))["probabilities"]
    via_fused = loaded.signatures["serving_fused"](spectrogram=tf.constant(fused))["probabilities"]
    np.testing.assert_allclose(via_fused.numpy(), direct.numpy(), atol=1e-5)
