"""Features: parity with librosa, graph/XLA/SavedModel use, beat sync, audio loading."""

from __future__ import annotations

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

from mgr_tf.core.config import FeatureConfig
from mgr_tf.features import spectral as F

CFG = FeatureConfig()
SR = CFG.sample_rate
# Tolerances: about 3x the largest differences measured against librosa 0.11 (x86-64 CPU, float32 STFT in
# TF): 1.6e-3 dB log-mel (the sweep; 6e-5 dB on the chord), 6e-7 chroma, 6.1e-5 MFCC (of values up to 150,
# a few float32 steps).
# The whole log-mel array is compared, floor included: the -80 dB floor (max - top_db) moves by at most
# the difference of the maxima, so clipping never widens a difference.
MEL_DB_TOL = 5e-3
CHROMA_TOL = 2e-6
MFCC_TOL = 2e-4


def _chord_with_clicks(seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0))
    y = y + 0.02 * rng.standard_normal(t.size)
    y[:: SR // 4] += 0.9  # clicks four times a second
    return y.astype(np.float32)


def _sweep(seconds=2.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * (100.0 * t + 1500.0 * t ** 2))).astype(np.float32)


SIGNALS = {"chord_clicks": _chord_with_clicks, "sweep": _sweep,
           "odd_length": lambda: _chord_with_clicks(1.0)[:20000 + 123]}


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_parity_with_librosa(name):
    y = SIGNALS[name]()
    mel_ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR), ref=1.0, amin=1e-10, top_db=80.0)
    chroma_ref = librosa.feature.chroma_stft(y=y, sr=SR, tuning=0)
    fused = F.fused_features(y, CFG).numpy()
    assert fused.shape == (mel_ref.shape[1], 140) == (F.num_frames(y.size), 140)
    np.testing.assert_allclose(fused[:, :128].T, mel_ref, rtol=0, atol=MEL_DB_TOL)
    np.testing.assert_allclose(fused[:, 128:].T, chroma_ref, rtol=0, atol=CHROMA_TOL)
    np.testing.assert_allclose(F.log_mel(y, CFG).numpy(), fused[:, :128])
    np.testing.assert_allclose(F.chroma(y, CFG).numpy(), fused[:, 128:])


def test_mfcc_parity():
    y = _chord_with_clicks(1.5)
    ref = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
    ours = F.mfcc(y, CFG, n_mfcc=20).numpy().T
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=MFCC_TOL)


def test_mfcc_feature_type_parity():
    """The `mfcc` feature type (a DCT matrix on the stored log-mel rows) is librosa's MFCC of those rows."""
    from mgr_tf.features.types import derive

    fused = F.fused_features(_chord_with_clicks(1.5), CFG).numpy()
    ref = librosa.feature.mfcc(S=fused[:, :CFG.n_mels].T, n_mfcc=CFG.n_mfcc).T
    ours = derive("mfcc", fused, CFG)
    assert ours.shape == ref.shape == (fused.shape[0], CFG.n_mfcc)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=MFCC_TOL)
    np.testing.assert_allclose(derive("mfcc", tf.constant(fused), CFG).numpy(), ours, rtol=0, atol=MFCC_TOL)


def test_silence_gives_zero_chroma_and_floor():
    fused = F.fused_features(np.zeros(SR, np.float32), CFG).numpy()
    assert np.all(np.isfinite(fused))
    assert np.all(fused[:, 128:] == 0.0)
    assert np.all(fused[:, :128] == -100.0)  # 10 log10(amin)


def test_batched_equals_unbatched_and_xla():
    a, b = _chord_with_clicks(2.0, seed=1), 0.1 * _chord_with_clicks(2.0, seed=2)
    batch = np.stack([a, b])
    eager = F.fused_features(batch, CFG).numpy()
    for i, y in enumerate((a, b)):
        # The top-dB floor is per example, so a quiet example is not floored by a loud neighbour.
        np.testing.assert_allclose(eager[i], F.fused_features(y, CFG).numpy(), atol=1e-4)
    xla = tf.function(lambda x: F.fused_features(x, CFG), jit_compile=True)
    np.testing.assert_allclose(xla(tf.constant(batch)).numpy(), eager, atol=1e-3)
    ds = tf.data.Dataset.from_tensor_slices(batch).map(lambda x: F.fused_features(x, CFG))
    np.testing.assert_allclose(np.stack(list(ds.as_numpy_iterator())), eager, atol=1e-4)


def test_audio_features_layer_saved_model(tmp_path):
    y = np.stack([_chord_with_clicks(1.0), _sweep(1.0)[:SR]])
    inputs = keras.Input((SR,), name="waveform")
    layer = F.AudioFeatures.from_feature_config(CFG, bands="chroma")
    model = keras.Model(inputs, layer(inputs))
    assert model.output_shape == (None, F.num_frames(SR), 12)
    expected = F.chroma(y, CFG).numpy()
    np.testing.assert_allclose(model(y).numpy(), expected, atol=1e-5)

    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert restored.layers[-1].get_config()["bands"] == "chroma"
    np.testing.assert_allclose(restored(y).numpy(), expected, atol=1e-5)

    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "sm"))
    out = served.signatures["serving_default"](waveform=tf.constant(y))
    np.testing.assert_allclose(next(iter(out.values())).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="features must be one of .*'chroma'.*got 'nope'"):
        F.AudioFeatures(bands="nope")


def test_sync_to_beats_golden():
    # 10 frames, 2 bands; beats at frames 3 and 7 -> segments [0,3), [3,7), [7,10).
    features = np.array([[0, 9], [2, 1], [1, 5], [10, 0], [30, 4], [20, 8], [40, 2], [5, 5], [7, 7], [6, 1]],
                        dtype=np.float32)
    synced = F.sync_to_beats(features, np.array([3, 7]))
    np.testing.assert_array_equal(synced, [[1, 5], [25, 3], [6, 5]])


def test_beat_sync_on_a_beat():
    # Clicks at 120 BPM over 10 s: about 20 beats -> about 21 segments of about 21.5 frames.
    y = np.zeros(10 * SR, np.float32)
    y[:: SR // 2] = 1.0
    y += 0.001 * np.random.default_rng(0).standard_normal(y.size).astype(np.float32)
    fused = F.fused_features(y, CFG).numpy()
    synced = F.beat_sync(fused, cfg=CFG)
    assert synced.shape[1] == 140 and 15 <= synced.shape[0] <= 25
    # The same from an explicit onset envelope and from the waveform.
    env = F.onset_envelope(fused[:, :128], CFG)
    np.testing.assert_array_equal(F.beat_sync(fused, env, CFG), synced)
    np.testing.assert_array_equal(F.beat_sync(fused, y, CFG), synced)


def test_beat_sync_without_beats_uses_fixed_segments():
    fused = F.fused_features(np.zeros(5 * SR, np.float32), CFG).numpy()
    synced = F.beat_sync(fused, cfg=CFG)
    frames_per_beat = round(0.5 * SR / CFG.hop_length)
    assert synced.shape == (int(np.ceil(fused.shape[0] / frames_per_beat)), 140)
    with pytest.raises(ValueError, match="bands"):
        F.beat_sync(fused[:, 128:], cfg=CFG)


def test_load_audio(tmp_path):
    import soundfile as sf

    y = _sweep(0.5)
    sf.write(tmp_path / "a.wav", np.stack([y, y], axis=1), 44100)  # stereo, other rate
    audio = F.load_audio(tmp_path / "a.wav", CFG)
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(audio.size - SR // 4) <= 2
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        F.load_audio(tmp_path / "missing.wav", CFG)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav: empty file"):
        F.load_audio(tmp_path / "empty.wav", CFG)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(ValueError, match="bad.wav: cannot decode"):
        F.load_audio(tmp_path / "bad.wav", CFG)
