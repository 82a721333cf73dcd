"""The musicnn backbone from audio: `ingest --encoder musicnn`, the refusal of spectrogram-only roots, heads fitted
on frozen pooled embeddings, fine-tuning, and the export's 16 kHz `serving_waveform`.

The architecture is built with random weights here (`--no-musicnn-pretrained`); the published weights are checked
against the original graph, and through this backbone, in tests/test_pretrained.py.
"""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from mgr_tf.core.config import DataConfig, FeatureConfig
from mgr_tf.models.musicnn.frontend import musicnn_input, musicnn_log_mel, resample_to_16k
from mgr_tf.models.musicnn.presets import N_MELS, SAMPLE_RATE

SR = 22050
SECONDS = 4.0
GENRES = ("blues", "country", "disco", "reggae")
FRAMES_4S = 1 + int(SECONDS * SAMPLE_RATE) // 256  # musicnn frames of a 4 s clip: 251


@pytest.fixture(scope="module")
def encoder_root(tmp_path_factory):
    """Four genres x 4 clips of 4 s tones at 22050 Hz, ingested with --encoder musicnn: (audio dir, files, root)."""
    from mgr_tf.ingest import main

    tmp = tmp_path_factory.mktemp("musicnn_audio")
    audio = tmp / "audio"
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * SR)) / SR
    files = [f"{g}/{g}.{j:05d}.wav" for g in GENRES for j in range(4)]
    for name in files:
        g = GENRES.index(name.split("/")[0])
        x = 0.3 * np.sin(2 * np.pi * (110.0 * (g + 1)) * t) + 0.05 * rng.standard_normal(t.size)
        (audio / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio / name, x.astype(np.float32), SR)
    (audio / "labels.csv").write_text("path,genre\n" + "".join(f"{f},{f.split('/')[0]}\n" for f in files))
    root = tmp / "root"
    assert main([str(audio), str(audio / "labels.csv"), "--out", str(root), "--clip-seconds", str(SECONDS),
                 "--workers", "1", "--quiet", "--encoder", "musicnn"]) == 0
    return audio, files, root


def test_ingest_stores_the_encoder_input_beside_each_fused_array(encoder_root):
    from mgr_tf.audio.convert import read_manifest
    from mgr_tf.features.spectral import load_audio

    audio, files, root = encoder_root
    _, records = read_manifest(root, "genre")
    assert len(records) == len(files)
    for record in records.values():
        folder = root / "fma_genre_spectrograms" / record["split"]
        stored = np.load(folder / f"{record['id']}.musicnn.npy")
        assert stored.shape == (N_MELS, FRAMES_4S)
        assert (folder / f"{record['id']}.fused.full.npy").is_file()
        assert not (root / "fma_genre_spectrograms_beat" / record["split"] / f"{record['id']}.musicnn.npy").exists()
    # The stored array is the musicnn front end of the clip the fused array was made from (the whole 4 s file).
    record = next(iter(records.values()))
    clip = load_audio(audio / record["source"], FeatureConfig(clip_seconds=SECONDS))  # (sources are relative)
    stored = np.load(root / "fma_genre_spectrograms" / record["split"] / f"{record['id']}.musicnn.npy")
    np.testing.assert_allclose(stored.T, musicnn_input(clip, SR), atol=1e-6)
    np.testing.assert_allclose(stored.T, np.asarray(musicnn_log_mel(resample_to_16k(clip, SR))), atol=1e-6)


def test_unlabelled_split_listing_ignores_encoder_inputs(encoder_root, tmp_path):
    from mgr_tf.data.readers import list_split

    _, _, root = encoder_root
    copy = tmp_path / "root"
    shutil.copytree(root / "fma_genre_spectrograms", copy / "fma_genre_spectrograms")
    (copy / "fma_genre_spectrograms" / "test_labels.txt").unlink()
    listing = list_split(copy, "fma_genre_spectrograms", "test")
    fused = sorted(p.name[:-len(".fused.full.npy")] for p in (copy / "fma_genre_spectrograms" / "test").glob(
        "*.fused.full.npy"))
    assert sorted(ex.track_id for ex in listing.examples) == fused and not listing.labelled


def test_pipeline_reads_the_stored_encoder_input(encoder_root):
    from mgr_tf.data import dataset_info, make_dataset, split_ids

    _, _, root = encoder_root
    data = DataConfig(data_dir=str(root), features="musicnn", patch_frames=0, batch_size=4, val_fraction=0.25)
    info = dataset_info(data)
    assert (info.num_bands, info.frames) == (N_MELS, 1870)
    features, _ = next(iter(make_dataset(data, "test", with_ids=True)))
    first = features["track_id"][0].numpy().decode()
    assert first == split_ids(data, "test")[0]
    stored = np.load(root / "fma_genre_spectrograms" / "test" / f"{first}.musicnn.npy").T
    x = features["spectrogram"][0].numpy()
    assert x.shape == (1870, N_MELS)
    np.testing.assert_array_equal(x[:FRAMES_4S], stored)  # then zero padding to the clip length
    assert not x[FRAMES_4S:].any()


def test_spectrogram_only_root_is_refused_with_one_line(tiny_corpus, tmp_path, capsys):
    from mgr_tf.core.cli import run_cli
    from mgr_tf.train import main

    code = run_cli(main, ["--data-dir", str(tiny_corpus), "--model", "musicnn", "--no-musicnn-pretrained",
                          "--out", str(tmp_path / "run"), "--export", "none"])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    assert "no musicnn encoder input here" in lines[0] and "needs the audio" in lines[0]
    assert "ingest --encoder musicnn" in lines[0] and "fma_genre_spectrograms" in lines[0]


def test_musicnn_flags_default_to_its_input_and_refuse_others():
    from mgr_tf.core.cli import UserError
    from mgr_tf.core.config import TrainConfig
    from mgr_tf.data import resolve
    from mgr_tf.models import model_config
    from mgr_tf.training.flags import build_parser, configs_from_args, parse_args
    from mgr_tf.training.plan import Plan, check

    data, model, _, _ = configs_from_args(parse_args(build_parser(), ["--model", "musicnn"]))
    assert (data.features, data.patch_frames, resolve(data).frames, data.batch_size) == ("musicnn", 0, 1870, 8)
    assert model.musicnn_encoder == "MSD_musicnn+MTT_musicnn" and model.musicnn_pretrained
    data, _, _, _ = configs_from_args(parse_args(build_parser(), ["--model", "cnn"]))
    assert (data.features, data.patch_frames) == ("mfcc", 256)  # other families keep the general defaults
    config = model_config("musicnn", musicnn_pretrained=False)
    with pytest.raises(UserError, match="takes --features musicnn"):
        check(Plan(DataConfig(features="mfcc", patch_frames=0), config, TrainConfig()))
    with pytest.raises(UserError, match="--patch-frames 0"):
        check(Plan(DataConfig(features="musicnn", patch_frames=187), config, TrainConfig()))
    with pytest.raises(ValueError, match="no beat-synchronous copy"):
        resolve(DataConfig(features="musicnn", beat=True))


def test_encoder_names_split_on_plus_except_for_an_existing_file(tmp_path):
    from mgr_tf.models import model_config
    from mgr_tf.models.musicnn.presets import encoder_names

    assert encoder_names("MSD_musicnn+MTT_musicnn") == ["MSD_musicnn", "MTT_musicnn"]
    assert encoder_names("MTT_musicnn") == ["MTT_musicnn"]
    odd = tmp_path / "a+b.keras"
    odd.write_bytes(b"")
    assert encoder_names(str(odd)) == [str(odd)]
    assert encoder_names(f"MSD_musicnn+{tmp_path}/m.keras") == ["MSD_musicnn", f"{tmp_path}/m.keras"]
    for bad, why in (("", "joined by"), ("MSD_musicnn+", "joined by"), ("MSD_musicnn+MSD_musicnn", "twice")):
        with pytest.raises(ValueError, match=why):
            model_config("musicnn", musicnn_encoder=bad)


def test_fine_tuning_trains_the_encoder_but_not_its_batch_norm_statistics():
    from mgr_tf.models.build import nested_layers
    from mgr_tf.models.musicnn.backbone import fine_tune
    from mgr_tf.models.musicnn.presets import ENCODER_LAYER
    from tests.model_harness import check_fit_step, tiny_config, tiny_model

    config = tiny_config("musicnn", musicnn_fine_tune_epochs=2)
    model = tiny_model("musicnn", "genre", config=config)
    encoder = model.get_layer(ENCODER_LAYER)
    trainable = {id(w) for w in model.trainable_weights}
    assert not encoder.trainable and not any(id(w) in trainable for w in encoder.weights)
    assert fine_tune(model, config) == 2
    layers = list(nested_layers(encoder))  # the default pair: two taggers nested in the encoder
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    moving = [np.array(layer.moving_mean) for layer in norms]
    kernels = [np.array(layer.kernel) for layer in convs]
    check_fit_step(model, "genre")
    assert all(np.array_equal(a, np.array(layer.moving_mean)) for a, layer in zip(moving, norms))
    assert any(not np.array_equal(a, np.array(layer.kernel)) for a, layer in zip(kernels, convs))
    assert fine_tune(model, tiny_config("musicnn")) == 0


def test_transfer_from_a_musicnn_model_keeps_the_encoders_batch_norm_frozen():
    """--init-from a musicnn genre model: the generic unfreezing of the fine-tuning phase trains the encoder's
    convolutions, not its batch-normalisation statistics."""
    from mgr_tf.models.build import nested_layers, set_backbone_trainable, transfer_model
    from mgr_tf.models.musicnn.presets import ENCODER_LAYER
    from mgr_tf.tasks import task_for
    from tests.model_harness import tiny_config, tiny_model

    genre = tiny_model("musicnn", "genre")
    model = transfer_model(genre, task_for("valence"), tiny_config("musicnn"))
    set_backbone_trainable(model, True)
    encoder = model.get_layer(ENCODER_LAYER)
    layers = list(nested_layers(encoder))
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(layer.trainable for layer in norms)
    assert all(layer.trainable for layer in layers if isinstance(layer, keras.layers.Conv2D))


@pytest.mark.parametrize("mode", ["mean", "mean+std", "max"])
def test_window_pooling_leaves_out_padding_windows(mode):
    from mgr_tf.models.layers import WindowPool

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    weights = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)  # clip 1: one padding window; 2: all padding
    got = np.asarray(WindowPool(mode)([x.reshape(6, 4), weights]))
    pool = {"mean": lambda a: a.mean(0), "max": lambda a: a.max(0),
            "mean+std": lambda a: np.concatenate([a.mean(0), a.std(0)])}[mode]
    np.testing.assert_allclose(got, np.stack([pool(x[0, :2]), pool(x[1])]), atol=1e-6)


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def musicnn_run(encoder_root, tmp_path_factory):
    """`train --model musicnn` (random weights, frozen encoder: heads on cached embeddings), exported as 'mn'."""
    from tests.conftest import run_train

    _, _, root = encoder_root
    tmp = tmp_path_factory.mktemp("musicnn_run")
    return run_train(["--data-dir", str(root), "--model", "musicnn", "--no-musicnn-pretrained", "--epochs", "3",
                      "--batch-size", "4", "--val-fraction", "0.25"], tmp, export="mn")


def test_heads_are_solved_on_standardised_embeddings_as_logistic_regression(musicnn_run):
    """The default head (convex): sklearn's LogisticRegression at C = 0.03 on the standardised pooled embeddings of
    the training and validation clips, written into the model's own head layer."""
    from sklearn.linear_model import LogisticRegression

    from mgr_tf.data import make_dataset
    from mgr_tf.models.build import load_keras_model
    from mgr_tf.training.frozen import split_at

    run_dir, report = musicnn_run
    config = json.loads((run_dir / "config.json").read_text())
    data = DataConfig(**{**config["data"], "mixup": 0.0})
    assert report["head_fit"]["method"] == "convex" and report["head_fit"]["splits"] == ["train", "validation"]
    assert not (run_dir / "history_frozen.csv").exists() and report["epochs_run"] == 0
    model = load_keras_model(run_dir)
    frozen, _ = split_at(model, "musicnn_pool")
    pooled, labels = [], []
    for split in ("train", "validation"):
        for x, y in make_dataset(data, split):
            pooled.append(np.asarray(frozen(x, training=False)))
            labels.append(np.asarray(y["genre"]))
    pooled, labels = np.concatenate(pooled), np.concatenate(labels)
    assert pooled.shape == (report["head_fit"]["clips"], 400)  # the default pair: MSD_musicnn then MTT_musicnn, 200 units each
    norm = model.get_layer("embedding_norm")
    # The normalisation was adapted on exactly these embeddings (so the frozen encoder did not change).
    np.testing.assert_allclose(np.asarray(norm.mean).reshape(-1), pooled.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.variance).reshape(-1), pooled.var(axis=0), rtol=1e-3, atol=1e-6)
    standard = np.asarray(norm(pooled))
    reference = LogisticRegression(C=0.03, tol=1e-10, max_iter=10000).fit(standard, labels)
    head = model.get_layer("genre")
    np.testing.assert_allclose(np.asarray(head.kernel), reference.coef_.T, atol=1e-4)
    first = next(iter(make_dataset(data, "validation")))[0]
    probabilities = np.asarray(model(first, training=False)["genre"])
    expected = reference.predict_proba(np.asarray(norm(np.asarray(frozen(first, training=False)))))
    # Two solvers' stopping points on 12 nearly separable clips (float32 weights): within 1e-3, where the Adam head
    # this replaced was 0.1 away.
    np.testing.assert_allclose(probabilities, expected, atol=1e-3)


def test_fine_tuning_that_does_not_lower_the_validation_loss_is_not_kept(encoder_root, musicnn_run, tmp_path):
    """A fine-tuning phase at a learning rate that wrecks the encoder: the run keeps the frozen encoder and the heads
    solved on it, and the report says so."""
    from mgr_tf.models.build import load_keras_model
    from mgr_tf.models.musicnn.presets import ENCODER_LAYER
    from tests.conftest import run_train

    _, _, root = encoder_root
    run_dir, report = run_train(["--data-dir", str(root), "--model", "musicnn", "--no-musicnn-pretrained",
                                 "--musicnn-fine-tune-epochs", "1", "--lr", "50", "--finetune-lr-factor", "1",
                                 "--batch-size", "4", "--val-fraction", "0.25"], tmp_path)
    assert report["finetune"]["kept"] is False
    assert not report["finetune"]["val_loss_after"] < report["finetune"]["val_loss_before"]  # (NaN: diverged)
    frozen = load_keras_model(musicnn_run[0]).get_layer(ENCODER_LAYER).get_weights()
    kept = load_keras_model(run_dir).get_layer(ENCODER_LAYER).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(frozen, kept))  # the same seeded random encoder, untouched
    assert "the weights it started from are kept" in (run_dir / "report.md").read_text()


def test_export_serves_16k_waveforms_as_the_stored_arrays(musicnn_run, encoder_root, capsys):
    from mgr_tf.audio.convert import read_manifest
    from mgr_tf.features.spectral import load_audio
    from mgr_tf.predict import main as predict_main
    from tests.conftest import export_dir

    audio, files, root = encoder_root
    export = export_dir(musicnn_run)
    config = json.loads((export / "assets" / "config.json").read_text())
    assert config["waveform_sample_rate"] == SAMPLE_RATE
    assert config["signatures"] == ["serving_default", "serving_waveform"]  # no serving_fused: not derivable
    loaded = tf.saved_model.load(str(export))
    assert set(loaded.signatures) == {"serving_default", "serving_waveform"}
    record = next(iter(read_manifest(root, "genre")[1].values()))
    stored = np.load(root / "fma_genre_spectrograms" / record["split"] / f"{record['id']}.musicnn.npy").T
    waveform = resample_to_16k(load_audio(audio / record["source"], FeatureConfig(clip_seconds=SECONDS)), SR)
    from_audio = loaded.signatures["serving_waveform"](waveform=tf.constant(waveform[None]))
    from_array = loaded.signatures["serving_default"](spectrogram=tf.constant(stored[None]))
    # The in-graph front end rounds the mel power to float16 as the stored one does; a value on a float16
    # rounding boundary can land one step apart (graph vs eager order), hence 1e-4 rather than 1e-6.
    np.testing.assert_allclose(from_audio["probabilities"].numpy(), from_array["probabilities"].numpy(), atol=1e-4)
    capsys.readouterr()
    assert predict_main([str(export), str(audio / files[0]), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["genre"] in GENRES and set(result["probabilities"]) == set(GENRES)


def test_bfloat16_encoder_computes_in_bfloat16_and_gives_float32_embeddings(tmp_path):
    from mgr_tf.models.build import at_precision, nested_layers
    from mgr_tf.models.musicnn.presets import ENCODER_LAYER, PATCH_FRAMES
    from tests.model_harness import tiny_config, tiny_model

    def convs(encoder):  # the first convolution of each tagger of the default pair
        return [layer for layer in nested_layers(encoder) if layer.name == "conv2d"]

    float32 = tiny_model("musicnn", "genre")
    model = tiny_model("musicnn", "genre", config=tiny_config("musicnn", musicnn_precision="bfloat16"))
    assert at_precision(float32, "float32") is float32  # float32 is the model itself, bit for bit
    encoder = model.get_layer(ENCODER_LAYER)
    assert [layer.dtype_policy.name for layer in convs(encoder)] == ["mixed_bfloat16"] * 2
    assert encoder.output.dtype == "float32" and all(w.dtype == "float32" for w in encoder.weights)
    encoder.set_weights(float32.get_layer(ENCODER_LAYER).get_weights())
    patches = tf.constant(np.random.default_rng(0).uniform(0, 3, (4, PATCH_FRAMES, N_MELS)).astype(np.float32))
    a = np.asarray(float32.get_layer(ENCODER_LAYER)(patches, training=False))
    b = np.asarray(encoder(patches, training=False))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert b.dtype == np.float32 and cosine.min() > 0.999, cosine
    model.save(tmp_path / "bf16.keras")  # the policy is part of the saved model
    loaded = keras.saving.load_model(tmp_path / "bf16.keras", compile=False).get_layer(ENCODER_LAYER)
    assert [layer.dtype_policy.name for layer in convs(loaded)] == ["mixed_bfloat16"] * 2
    np.testing.assert_array_equal(np.asarray(loaded(patches, training=False)), b)
    with pytest.raises(ValueError, match="musicnn_precision must be one of float32, bfloat16"):
        tiny_config("musicnn", musicnn_precision="float16")
