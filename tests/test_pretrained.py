"""musicnn's published weights in Keras 3: parity with the shipped TF1 graphs, front end, converter, serving.

The musicnn 0.1.0 wheel (Pons and Serra, ISMIR-LBD 2019; ISC licence) is fetched with
`pip download musicnn==0.1.0 --no-deps` into ~/.cache/mgr_tf/musicnn_wheel (reused when present); the tests
skip, saying why, only if that download fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mgr_tf.models.musicnn.frontend import musicnn_frontend
from mgr_tf.models.musicnn.presets import MSD_TAGS, MTT_TAGS, PATCH_FRAMES, PRETRAINED, SAMPLE_RATE

WHEEL_CACHE = Path.home() / ".cache" / "mgr_tf" / "musicnn_wheel"
# Largest |port - original graph| allowed on tags and embeddings (measured: <= 3.4e-6 on the embeddings,
# <= 3e-7 on the tags, all four models).
PARITY_ATOL = 1e-4
# Front end vs the package's librosa recipe, on 7 s music-like clips (measured over 3 seeds): mean |diff|
# ~3e-7; max 4.1e-4, where float32 round-off between TF's and librosa's STFT moves a mel value across a
# float16 rounding boundary (the recipe stores the mel power as float16: a relative step of 2^-11, i.e.
# up to 0.43 * 2^-11 = 2.1e-4 per flip in log10 units, twice that at most).
FRONTEND_MAX_ATOL = 1e-3
FRONTEND_MEAN_ATOL = 1e-5


@pytest.fixture(scope="session")
def musicnn_wheel() -> Path:
    wheels = sorted(WHEEL_CACHE.glob("musicnn-0.1.0-*.whl"))
    if not wheels:
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps", "-d", str(WHEEL_CACHE)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot download the musicnn 0.1.0 wheel ({type(exc).__name__}: {exc})")
        wheels = sorted(WHEEL_CACHE.glob("musicnn-0.1.0-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"`pip download musicnn==0.1.0 --no-deps` failed: {last[0]}")
    return wheels[0]


@pytest.fixture(scope="session")
def musicnn_pkg(musicnn_wheel, tmp_path_factory) -> Path:
    """The wheel's `musicnn/` folder, unzipped."""
    root = tmp_path_factory.mktemp("musicnn_wheel")
    with zipfile.ZipFile(musicnn_wheel) as zf:
        zf.extractall(root)
    return root / "musicnn"


@pytest.fixture(scope="session")
def msd_keras(musicnn_wheel, tmp_path_factory):
    """MSD_musicnn converted from the wheel file by the CLI and loaded back from its .keras file."""
    import keras

    from mgr_tf.pretrained import main

    out = tmp_path_factory.mktemp("converted") / "msd_musicnn.keras"
    assert main(["musicnn", "--wheel", str(musicnn_wheel), "--model", "MSD_musicnn", "--out", str(out)]) == 0
    return keras.saving.load_model(out)


def _patches(n=3, seed=0):
    """Random log-mel-like patches in the range the front end produces (0 .. ~6)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 4.0, size=(n, PATCH_FRAMES, 96)).astype(np.float32) ** 1.2


def _music(seconds: float, seed: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A music-like signal: decaying harmonic notes on a beat grid, a kick, hi-hat noise bursts, a noise floor."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n)
    beat = int(0.5 * sr)
    for start in range(0, n, beat):
        length = min(beat, n - start)
        t = np.arange(length) / sr
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        for h in range(1, 8):
            y[start:start + length] += 0.3 / h * np.exp(-3 * t) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3))
        k = min(2000, length)
        y[start:start + k] += 0.8 * np.exp(-np.arange(k) / 300) * np.sin(2 * np.pi * 60 * np.arange(k) / sr)
        hat = start + beat // 2
        m = max(0, min(800, n - hat))
        y[hat:hat + m] += 0.2 * rng.standard_normal(m) * np.exp(-np.arange(m) / 100)
    y += 0.01 * rng.standard_normal(n)
    return (0.9 * y / np.abs(y).max()).astype(np.float32)


def _package_recipe(y: np.ndarray) -> np.ndarray:
    """The package's extractor.batch_data on a 16 kHz waveform, with librosa calls.

    Two settings are spelled out where today's libraries changed their defaults: librosa < 0.10 (which the
    package used) padded centred frames by reflection, and NumPy < 1.17 (its pin) evaluated
    ``10000 * float16_array`` in float32; NumPy 2 keeps float16 and overflows to inf above a mel power of 6.55.
    """
    import librosa

    rep = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, hop_length=256, n_fft=512, n_mels=96,
                                         pad_mode="reflect").T
    rep = rep.astype(np.float16)
    rep = np.log10(10000 * rep.astype(np.float32) + 1)
    starts = range(0, rep.shape[0] - PATCH_FRAMES + 1, PATCH_FRAMES)
    return np.stack([rep[s:s + PATCH_FRAMES] for s in starts])


# ----------------------------------------------------------------------------------------------


def test_tag_constants_are_the_packages(musicnn_pkg):
    import ast

    source = (musicnn_pkg / "configuration.py").read_text()
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    assert tuple(values["MTT_LABELS"]) == MTT_TAGS and tuple(values["MSD_LABELS"]) == MSD_TAGS
    assert len(MTT_TAGS) == len(MSD_TAGS) == 50


@pytest.mark.parametrize("model_name", ["MSD_musicnn", "MTT_vgg", "MTT_musicnn", "MSD_vgg"])
def test_port_equals_original_graph(musicnn_pkg, model_name):
    from mgr_tf.models.musicnn.convert import load_pretrained
    from mgr_tf.models.musicnn.parity import original_graph_outputs

    x = _patches()
    original = original_graph_outputs(musicnn_pkg / model_name, x)
    port = load_pretrained(musicnn_pkg / model_name, model_name)(x, training=False)
    width = 200 if "musicnn" in model_name else 256
    assert original["tags"].shape == (3, 50) and original["embedding"].shape == (3, width)
    for key in ("tags", "embedding"):
        np.testing.assert_allclose(np.asarray(port[key]), original[key], rtol=0, atol=PARITY_ATOL, err_msg=key)
    # The restored weights are the published ones (tags are not those of an untrained net: not all ~0.5).
    assert np.abs(original["tags"] - 0.5).max() > 0.2


def test_converted_keras_file_equals_original_graph(msd_keras, musicnn_pkg):
    from mgr_tf.models.musicnn.parity import original_graph_outputs

    x = _patches(seed=1)
    original = original_graph_outputs(musicnn_pkg / "MSD_musicnn", x)
    port = msd_keras(x, training=False)
    for key in ("tags", "embedding"):
        np.testing.assert_allclose(np.asarray(port[key]), original[key], rtol=0, atol=PARITY_ATOL, err_msg=key)


def test_frontend_matches_package_librosa_recipe():
    for seed in range(2):
        y = _music(7.0, seed)
        expected = _package_recipe(y)
        got = musicnn_frontend(y).numpy()
        assert got.shape == expected.shape == (2, PATCH_FRAMES, 96)
        diff = np.abs(got - expected)
        assert diff.max() < FRONTEND_MAX_ATOL and diff.mean() < FRONTEND_MEAN_ATOL, (diff.max(), diff.mean())
    batched = musicnn_frontend(np.stack([y, y])).numpy()
    np.testing.assert_allclose(batched[1], got, atol=1e-6)
    # Shorter than one patch: repeat-padded to one patch (the package itself fails there).
    assert musicnn_frontend(y[: SAMPLE_RATE]).shape == (1, PATCH_FRAMES, 96)


def _write_checkpoint(prefix: Path, tensors: dict) -> None:
    import tensorflow as tf

    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


def _published_tensors(model_dir: Path) -> dict:
    import tensorflow as tf

    from mgr_tf.models.musicnn.convert import checkpoint_prefix

    with checkpoint_prefix(model_dir, model_dir.name) as prefix:
        reader = tf.train.load_checkpoint(prefix)
        return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if "Adam" not in n}


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_converter_names_a_missing_or_extra_variable(musicnn_pkg, tmp_path, capsys, change):
    from mgr_tf.core.cli import run_cli
    from mgr_tf.pretrained import main

    tensors = _published_tensors(musicnn_pkg / "MSD_musicnn")
    if change == "missing":
        del tensors["conv2d_3/kernel"]
        culprit = "conv2d_3/kernel"
    else:
        tensors["conv2d_99/kernel"] = np.zeros((3, 3, 1, 4), np.float32)
        culprit = "conv2d_99/kernel"
    _write_checkpoint(tmp_path / "ckpt" / "MSD_musicnn" / "MSD_musicnn", tensors)
    out = tmp_path / "out.keras"
    rc = run_cli(main, ["musicnn", "--dir", str(tmp_path / "ckpt"), "--model", "MSD_musicnn", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and repr(culprit) in err
    assert str(tmp_path / "ckpt" / "MSD_musicnn" / "MSD_musicnn.index") in err


@pytest.mark.slow
def test_cli_bad_wheel_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "musicnn-0.1.0-py3-none-any.whl"
    bad.write_text("not a zip")
    proc = subprocess.run([sys.executable, "-m", "mgr_tf.pretrained", "musicnn", "--wheel", str(bad),
                           "--model", "MSD_musicnn", "--out", str(tmp_path / "m.keras")],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and str(bad) in lines[0] and "not a wheel" in lines[0]


def test_tag_helper_on_a_22050_hz_file(msd_keras, tmp_path):
    import soundfile as sf

    from mgr_tf.models.musicnn.tagging import tag

    path = tmp_path / "clip.wav"
    sf.write(path, _music(7.0, seed=3, sr=22050), 22050)
    [result] = tag(msd_keras, [path], top_k=3)
    names = [t for t, _ in result["tags"]]
    probs = [p for _, p in result["tags"]]
    assert len(names) == 3 and set(names) <= set(MSD_TAGS) and probs == sorted(probs, reverse=True)


@pytest.mark.slow
def test_exported_tagger_answers_tf_serving_rest_rows(msd_keras, tmp_path):
    import tensorflow as tf

    from mgr_tf.models import BACKBONES
    from mgr_tf.serving.tagger import export_tagger

    version = export_tagger(msd_keras, tmp_path / "musicnn_msd", BACKBONES["musicnn"].encoder.converter.tagger(),
                            family="musicnn")
    assert version.name == "1" and (version / "saved_model.pb").exists()
    assert not [p for p in version.parent.iterdir() if p.name.startswith(".tmp")]
    assert (version / "assets" / "labels.txt").read_text().splitlines() == list(MSD_TAGS)

    clips = [_music(6.5, seed=10), _music(6.5, seed=11)]
    body = json.loads(json.dumps({"signature_name": "serving_waveform", "instances": [c.tolist() for c in clips]}))
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures[body["signature_name"]]
    answer = signature(waveform=tf.constant(np.stack(body["instances"]), tf.float32))
    tags = answer["tags"].numpy()
    assert tags.shape == (2, 50)
    for clip, row in zip(clips, tags):
        expected = msd_keras(musicnn_frontend(clip), training=False)["tags"].numpy().mean(axis=0)
        np.testing.assert_allclose(row, expected, atol=1e-5)

    patches = _patches(2)
    default = loaded.signatures["serving_default"](patch=tf.constant(patches))
    np.testing.assert_allclose(default["tags"].numpy(), msd_keras(patches)["tags"].numpy(), atol=1e-5)
    assert set(PRETRAINED) == {"MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"}


@pytest.mark.slow
def test_predict_tags_from_keras_file_and_from_tagger_export(msd_keras, tmp_path, capsys):
    import soundfile as sf

    from mgr_tf.models import BACKBONES
    from mgr_tf.models.musicnn.tagging import tag
    from mgr_tf.predict import main as predict_main
    from mgr_tf.serving.tagger import export_tagger

    keras_file = tmp_path / "msd.keras"
    msd_keras.save(keras_file)
    export = export_tagger(msd_keras, tmp_path / "tagger", BACKBONES["musicnn"].encoder.converter.tagger(),
                           family="musicnn").parent
    clip = tmp_path / "clip.wav"
    sf.write(clip, _music(7.0, seed=4, sr=22050), 22050)
    [expected] = tag(msd_keras, [clip], top_k=3)
    for model in (keras_file, export):
        capsys.readouterr()
        assert predict_main([str(model), str(clip), "--tags", "--top-k", "3", "--json"]) == 0
        [result] = json.loads(capsys.readouterr().out)["results"]
        assert list(result["tags"]) == [t for t, _ in expected["tags"]]
        np.testing.assert_allclose(list(result["tags"].values()), [p for _, p in expected["tags"]], atol=1e-5)
    assert predict_main([str(export), str(tmp_path / "missing.wav"), "--tags"]) == 2


@pytest.mark.slow
def test_predict_tags_of_a_folder_in_bfloat16_and_float32(msd_keras, tmp_path, capsys):
    import csv

    import soundfile as sf

    from mgr_tf.core.cli import run_cli
    from mgr_tf.models import BACKBONES
    from mgr_tf.predict import main as predict_main
    from mgr_tf.serving.tagger import export_tagger

    keras_file = tmp_path / "msd.keras"
    msd_keras.save(keras_file)
    folder = tmp_path / "clips"
    folder.mkdir()
    for seed in range(3):
        sf.write(folder / f"clip{seed}.wav", _music(7.0, seed=20 + seed, sr=22050), 22050)
    rows = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.csv"
        assert predict_main([str(keras_file), str(folder), "--tags", "--precision", precision, "--out", str(out),
                             "--quiet"]) == 0
        with open(out, newline="") as handle:
            rows[precision] = list(csv.DictReader(handle))
        assert list(rows[precision][0])[:2] == ["input", "windows"] and list(rows[precision][0])[2:] == list(MSD_TAGS)
    for a, b in zip(rows["float32"], rows["bfloat16"]):
        np.testing.assert_allclose([float(b[t]) for t in MSD_TAGS], [float(a[t]) for t in MSD_TAGS], atol=0.02)
    export = export_tagger(msd_keras, tmp_path / "tagger", BACKBONES["musicnn"].encoder.converter.tagger(),
                           family="musicnn").parent
    capsys.readouterr()
    assert run_cli(predict_main, [str(export), str(folder), "--tags", "--precision", "bfloat16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the converted .keras file" in err[0]


def test_backbone_pools_the_published_encoders_embeddings(msd_keras, musicnn_wheel, tmp_path):
    """`--model musicnn` with the published weights, by name (converted once into the cache from the cached wheel)
    and from a .keras path: the pooled embedding is the mean of the converted encoder's per-patch embeddings."""
    import keras

    from mgr_tf.core.paths import cache_home
    from mgr_tf.models import model_config
    from mgr_tf.models.build import build_model
    from mgr_tf.models.musicnn.frontend import musicnn_log_mel
    from mgr_tf.models.musicnn.presets import N_MELS, PATCH_FRAMES
    from mgr_tf.tasks import get_task

    wheel_dir = cache_home() / "musicnn_wheel"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(musicnn_wheel, wheel_dir / musicnn_wheel.name)  # what pip download would have fetched
    rng = np.random.default_rng(3)
    t = np.arange(7 * 16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    frames = np.asarray(musicnn_log_mel(wave))[:2 * PATCH_FRAMES]  # two whole 3 s patches
    expected = np.asarray(msd_keras(frames.reshape(2, PATCH_FRAMES, N_MELS), training=False)["embedding"]).mean(0)
    path = tmp_path / "msd.keras"
    msd_keras.save(path)
    for encoder in ("MSD_musicnn", str(path)):
        model = build_model(model_config("musicnn", musicnn_encoder=encoder), get_task("genre"), num_bands=N_MELS,
                            frames=1870, num_classes=4)
        pooled = keras.Model(model.input, model.get_layer("musicnn_pool").output)
        got = np.asarray(pooled({"spectrogram": frames[None]}, training=False))[0]
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=encoder)
    assert (cache_home() / "musicnn" / "MSD_musicnn.keras").is_file()
    # The default pair: both taggers on the same patches, MSD's 200 units then MTT's.
    model = build_model(model_config("musicnn"), get_task("genre"), num_bands=N_MELS, frames=1870, num_classes=4)
    pooled = keras.Model(model.input, model.get_layer("musicnn_pool").output)
    got = np.asarray(pooled({"spectrogram": frames[None]}, training=False))[0]
    mtt = keras.saving.load_model(cache_home() / "musicnn" / "MTT_musicnn.keras", compile=False)
    mtt_expected = np.asarray(mtt(frames.reshape(2, PATCH_FRAMES, N_MELS), training=False)["embedding"]).mean(0)
    assert got.shape == (400,)
    np.testing.assert_allclose(got, np.concatenate([expected, mtt_expected]), atol=1e-5)
