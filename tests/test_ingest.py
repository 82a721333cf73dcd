"""Tests of the audio -> dataset converter (`python -m mgr_tf.ingest`) and its Beam pipeline."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgr_tf.audio.ingest import MANIFEST, SUMMARY, IngestConfig, ingest
from mgr_tf.audio.labels import assign_splits
from mgr_tf.core.config import DataConfig, FeatureConfig
from mgr_tf.data import readers as mgr_io
from mgr_tf.ingest import main

SR = 22050
CLIP = 5.0  # seconds; 1 + 5 * 22050 // 512 = 216 frames
FRAMES = 1 + int(CLIP * SR) // 512
FCFG = dataclasses.replace(FeatureConfig(), clip_seconds=CLIP)
GENRES = ("Rock", "Jazz", "Hip-Hop")
# genres.csv holds one genre outside FMA's 20 ("Experimental"): with FMA's names it is skipped as unknown.
FMA_NAMES = IngestConfig(workers=1, test_fraction=0.25, genre_vocabulary="fma")


def music(seconds: float, seed: int, sr: int = SR, stereo: bool = False) -> np.ndarray:
    """A tone with drum-like noise bursts at a steady tempo: something beat tracking can follow."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = 110.0 * 2 ** (rng.integers(0, 24) / 12)
    x = 0.3 * np.sin(2 * np.pi * pitch * t)
    beat = 60.0 / rng.uniform(90, 140)
    burst = np.exp(-((t % beat) / 0.03)) * rng.standard_normal(t.size)
    x = (x + 0.4 * burst).astype(np.float32) / 1.5
    return np.stack([x, x], axis=1) if stereo else x


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every dataset file under root (sample and label files)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != SUMMARY and not p.name.startswith("ingest_manifest")}


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory):
    """Good files in four formats (3 genres x 4 clips) and one file of each bad kind, plus labels."""
    root = tmp_path_factory.mktemp("audio")
    rows = []
    formats = [("wav", SR), ("flac", SR), ("ogg", 44100), ("mp3", 44100)]
    for g, genre in enumerate(GENRES):
        for j in range(4):
            ext, sr = formats[(g + j) % len(formats)]
            path = root / genre.lower() / f"{genre.lower()}_{j}.{ext}"
            path.parent.mkdir(exist_ok=True)
            # 7 s: longer than the clip, so centre and first cuts differ.
            sf.write(path, music(7.0, 10 * g + j, sr, stereo=ext == "flac"), sr)
            rows.append((f"{genre.lower()}/{path.name}", genre))
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "silent.wav", np.zeros(int(7 * SR), np.float32), SR)
    sf.write(bad / "short.wav", music(2.0, 99), SR)
    rows += [("bad/corrupt.mp3", "Rock"), ("bad/empty.wav", "Jazz"), ("bad/silent.wav", "Rock"),
             ("bad/short.wav", "Jazz"), ("bad/missing.wav", "Rock"), ("rock/rock_0.wav", "Experimental")]
    # The bad files are placed in train, so that the drawn test split (a quarter of each genre) holds
    # exactly one good clip per genre whatever the seed.
    (root / "genres.csv").write_text("path,genre,split\n" + "".join(
        f"{p},{g},{'train' if i >= 12 else ''}\n" for i, (p, g) in enumerate(rows)))
    emo = [(p, 0.1 + 0.07 * i, 0.9 - 0.06 * i, 0.5) for i, (p, g) in enumerate(rows[:12])]
    (root / "emotions.csv").write_text("path,valence,energy,danceability\n"
                                       + "".join(f"{p},{v:.3f},{e:.3f},{d:.3f}\n" for p, v, e, d in emo))
    return root


@pytest.fixture(scope="session")
def genre_root(audio_dir, tmp_path_factory):
    """The genre conversion with two decoding workers (the CLI path)."""
    out = tmp_path_factory.mktemp("genre_out")
    argv = [str(audio_dir), str(audio_dir / "genres.csv"), "--out", str(out), "--clip-seconds", str(CLIP),
            "--workers", "2", "--test-fraction", "0.25", "--genre-vocabulary", "fma"]
    assert main(argv) == 0
    return out


def test_genre_conversion_writes_layout_and_reports_bad_files(genre_root):
    summary = json.loads((genre_root / SUMMARY).read_text())
    assert summary["task"] == "genre"
    assert summary["converted"] == 12
    assert {k: summary["skipped"].get(k) for k in ("corrupt", "empty", "missing", "silent", "too short",
                                                   "unknown genre")} == {
        "corrupt": 1, "empty": 1, "missing": 1, "silent": 1, "too short": 1, "unknown genre": 1}
    reasons = {p["source"]: p["reason"] for ps in summary["problems"].values() for p in ps}
    assert "too short (2.0 s < 4 s" in reasons["bad/short.wav"]
    assert reasons["bad/empty.wav"] == "empty file"
    assert "cannot decode" in reasons["bad/corrupt.mp3"]
    # 4 clips per genre with test fraction 0.25: one test clip per genre.
    assert summary["counts"]["fma_genre_spectrograms"] == {"train": 9, "test": 3}
    rows, skipped = mgr_io.read_genre_labels(genre_root / "fma_genre_spectrograms" / "train_labels.txt")
    assert not skipped and len(rows) == 9
    listing = mgr_io.list_split(genre_root, "fma_genre_spectrograms_beat", "test", check_files=True)
    assert sorted(ex.genre for ex in listing.examples) == sorted(GENRES)
    full = mgr_io.load_spectrogram(genre_root / "fma_genre_spectrograms" / "train" / f"{rows[0][1]}")
    beat = mgr_io.load_spectrogram(genre_root / "fma_genre_spectrograms_beat" / "train" / f"{rows[0][1]}")
    assert full.shape == (140, FRAMES)
    assert 2 <= beat.shape[1] < FRAMES


def test_resume_converts_nothing_and_keeps_outputs(genre_root, audio_dir):
    before = tree_digest(genre_root)
    summary = ingest(audio_dir, [audio_dir / "genres.csv"], genre_root, FMA_NAMES, FCFG, progress=False)
    assert summary["converted"] == 0 and summary["already_converted"] == 12
    assert tree_digest(genre_root) == before


def test_interrupted_run_resumes_and_matches_one_run(audio_dir, genre_root, tmp_path):
    out = tmp_path / "out"
    cfg = FMA_NAMES
    ingest(audio_dir, [audio_dir / "genres.csv"], out, cfg, FCFG, progress=False)
    # Simulate a run killed halfway: drop the last records and a label file, truncate the last line.
    manifest = out / MANIFEST.format(task="genre")
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:6]) + "\n" + lines[6][:20])
    (out / "fma_genre_spectrograms" / "test_labels.txt").unlink()
    summary = ingest(audio_dir, [audio_dir / "genres.csv"], out, cfg, FCFG, progress=False)
    assert summary["already_converted"] == 5 and summary["converted"] == 7
    assert tree_digest(out) == tree_digest(genre_root)


def test_changed_settings_are_refused(audio_dir, genre_root):
    with pytest.raises(Exception, match="converted with other settings .*clip"):
        ingest(audio_dir, [audio_dir / "genres.csv"], genre_root,
               dataclasses.replace(FMA_NAMES, clip="first"), FCFG, progress=False)


@pytest.mark.slow
def test_converted_genre_folder_trains_ready(genre_root):
    from mgr_tf.data import make_dataset

    cfg = DataConfig(data_dir=str(genre_root), task="genre", features="fused", num_genres=10, batch_size=4,
                     val_fraction=0.25, max_frames=FRAMES)
    x, y = next(iter(make_dataset(cfg, "train")))
    assert x["spectrogram"].shape == (4, FRAMES, 140)
    assert y["genre"].shape == (4,)
    assert sum(int(b[1]["genre"].shape[0]) for b in make_dataset(cfg, "test")) == 3


@pytest.mark.slow
def test_emotion_csv_gives_multitask_dataset_that_loads(audio_dir, tmp_path):
    from mgr_tf.data import make_dataset

    out = tmp_path / "emo"
    summary = ingest(audio_dir, [audio_dir / "emotions.csv"], out,
                     IngestConfig(workers=1, gz=True, clip="first"), FCFG, progress=False)
    assert summary["task"] == "multitask" and summary["converted"] == 12
    assert summary["counts"]["multitask_dataset"] == {"train": 10, "test": 2}
    assert len(list((out / "multitask_dataset_beat" / "test").glob("*.fused.full.npy.gz"))) == 2
    rows, _ = mgr_io.read_emotion_labels(out / "multitask_dataset" / "train_labels.txt")
    assert all(0 <= v <= 1 for _, _, vals in rows for v in vals)
    cfg = DataConfig(data_dir=str(out), task="multitask", features="fused", beat=True, batch_size=3,
                     val_fraction=0.2)
    x, y = next(iter(make_dataset(cfg, "train")))
    assert x["spectrogram"].shape[0] == 3 and x["spectrogram"].shape[2] == 140
    assert set(y) == {"valence", "energy", "danceability"} and y["valence"].shape == (3, 1)


def test_short_files_pad_or_min_seconds(audio_dir, tmp_path):
    labels = tmp_path / "short.csv"
    labels.write_text("path,genre,split\nbad/short.wav,Jazz,train\nrock/rock_1.flac,Rock,test\n")
    padded = ingest(audio_dir, [labels], tmp_path / "pad", IngestConfig(workers=1, clip="pad"), FCFG, progress=False)
    assert padded["converted"] == 2
    arr = mgr_io.load_spectrogram(tmp_path / "pad" / "fma_genre_spectrograms" / "train" / "short.fused.full.npy")
    assert arr.shape == (140, FRAMES)
    assert np.all(arr[128:, -10:] == 0.0)  # zero padding gives silent (all-zero chroma) frames
    kept = ingest(audio_dir, [labels], tmp_path / "min", IngestConfig(workers=1, min_seconds=1.5), FCFG,
                  progress=False)
    arr = mgr_io.load_spectrogram(tmp_path / "min" / "fma_genre_spectrograms" / "train" / "short.fused.full.npy")
    assert kept["converted"] == 2 and arr.shape == (140, 1 + 2 * SR // 512)


def test_centre_clip_and_30s_default(tmp_path):
    """The real default: a 30 s clip from the centre of a 34 s file gives 1292 frames."""
    audio = music(34.0, 5)
    sf.write(tmp_path / "a.wav", audio, SR, subtype="FLOAT")
    labels = tmp_path / "l.csv"
    sf.write(tmp_path / "b.wav", music(29.5, 6), SR)  # FMA previews may be a little short of 30 s
    labels.write_text("path,genre,split\na.wav,Blues,train\nb.wav,Jazz,test\n")
    summary = ingest(tmp_path, [labels], tmp_path / "out", IngestConfig(workers=1), progress=False)
    assert summary["converted"] == 2
    short = mgr_io.load_spectrogram(tmp_path / "out" / "fma_genre_spectrograms" / "test" / "b.fused.full.npy")
    assert short.shape == (140, 1 + int(29.5 * SR) // 512)
    arr = mgr_io.load_spectrogram(tmp_path / "out" / "fma_genre_spectrograms" / "train" / "a.fused.full.npy")
    assert arr.shape == (140, 1292)
    from mgr_tf.features.spectral import fused_features

    centre = audio[2 * SR: 32 * SR]
    np.testing.assert_allclose(arr.T, fused_features(centre).numpy(), atol=1e-4)


def _fma_metadata(meta: Path, ids: list[int], genres: list[str], splits: list[str], subsets: list[str]):
    """tracks.csv / echonest.csv / genres.csv with FMA's multi-row headers, built with pandas."""
    import pandas as pd

    tracks = pd.DataFrame({("album", "title"): ["a"] * len(ids), ("set", "split"): splits,
                           ("set", "subset"): subsets, ("track", "genre_top"): genres,
                           ("track", "genres"): ["[12]" if g == "Rock" else "[]" for g in genres],
                           ("track", "title"): [f"t{i}" for i in ids]},
                          index=pd.Index(ids, name="track_id"))
    tracks.columns = pd.MultiIndex.from_tuples(tracks.columns)
    tracks.to_csv(meta / "tracks.csv")
    echo = pd.DataFrame({("echonest", "audio_features", "acousticness"): [0.5] * len(ids),
                         ("echonest", "audio_features", "danceability"): np.linspace(0.2, 0.8, len(ids)),
                         ("echonest", "audio_features", "energy"): np.linspace(0.9, 0.1, len(ids)),
                         ("echonest", "audio_features", "valence"): np.linspace(0.1, 0.7, len(ids)),
                         ("echonest", "metadata", "artist_name"): ["x"] * len(ids)},
                        index=pd.Index(ids, name="track_id"))
    echo.columns = pd.MultiIndex.from_tuples(echo.columns)
    echo.to_csv(meta / "echonest.csv")
    pd.DataFrame({"genre_id": [12, 25], "parent": [0, 12], "title": ["Rock", "Punk"]}).set_index(
        "genre_id").to_csv(meta / "genres.csv")


def test_fma_metadata_formats(tmp_path):
    fma, meta = tmp_path / "fma_small", tmp_path / "fma_metadata"
    meta.mkdir()
    ids = [2, 5, 140, 1042, 99999]
    for i, tid in enumerate(ids[:4]):  # track 99999 has no audio file
        path = fma / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, music(5.5, i, 44100), 44100)
    _fma_metadata(meta, ids, ["Rock", "Hip-Hop", "Experimental", "Jazz", "Rock"],
                  ["training", "validation", "test", "test", "training"], ["small", "small", "small", "medium",
                                                                          "small"])
    # Track 2 is tagged with genre 12 only, i.e. "Rock" by genres.csv; the genre read is Rock either way.
    out = tmp_path / "out"
    assert main([str(fma), str(meta / "tracks.csv"), "--out", str(out), "--clip-seconds", str(CLIP),
                 "--workers", "1", "--quiet"]) == 0
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["converted"] == 3
    assert summary["skipped"] == {"no audio file": 1, "unknown genre": 1}
    rows, _ = mgr_io.read_genre_labels(out / "fma_genre_spectrograms" / "train_labels.txt")
    assert [(name, genre) for _, name, genre in rows] == [("2.fused.full.npy.gz", "Rock"),
                                                          ("5.fused.full.npy.gz", "Hip-Hop")]
    rows, _ = mgr_io.read_genre_labels(out / "fma_genre_spectrograms" / "test_labels.txt")
    assert [(name, genre) for _, name, genre in rows] == [("1042.fused.full.npy.gz", "Jazz")]
    # echonest + tracks into the same root: emotions, FMA's split, the subset filter (1042 is medium
    # only), and the genre sub-datasets of the first run stay as they are.
    genre_files = {k: v for k, v in tree_digest(out).items() if k.startswith("fma_genre")}
    out2 = out
    assert main([str(fma), str(meta / "tracks.csv"), str(meta / "echonest.csv"), "--out", str(out2),
                 "--clip-seconds", str(CLIP), "--workers", "1", "--fma-subset", "small", "--quiet"]) == 0
    rows, _ = mgr_io.read_emotion_labels(out2 / "multitask_dataset" / "train_labels.txt")
    assert [(r[1], r[2]) for r in rows] == [("2", (0.1, 0.9, 0.2)), ("5", (0.25, 0.7, 0.35))]
    rows, _ = mgr_io.read_emotion_labels(out2 / "multitask_dataset" / "test_labels.txt")
    assert [r[1] for r in rows] == ["140"]
    assert {k: v for k, v in tree_digest(out).items() if k.startswith("fma_genre")} == genre_files


def test_split_is_deterministic_and_stratified():
    pairs = [(str(i), "A" if i % 3 else "B") for i in range(60)]
    first = assign_splits(pairs, 0.25, seed=1)
    assert first == assign_splits(list(reversed(pairs)), 0.25, seed=1)
    assert first != assign_splits(pairs, 0.25, seed=2)
    assert sum(first[t] == "test" for t, s in pairs if s == "A") == 10
    assert sum(first[t] == "test" for t, s in pairs if s == "B") == 5


def test_split_matches_the_pipelines_draw():
    """ingest's split is the data pipeline's stratified draw, plus one test and one train track per genre."""
    from mgr_tf.data.splits import stratified_split, stratified_subset

    ids = [f"t{i:02d}" for i in range(23)]
    strata = ["a"] * 12 + ["b"] * 8 + ["c"] * 2 + ["d"]
    assert stratified_split(ids, strata, 0.3, seed=5) == stratified_subset(ids, strata, 7, seed=5)
    # Quotas a 4, b 2, c 1, d 0 (largest remainders of 7): already one per genre of two or more tracks.
    splits = assign_splits(list(zip(ids, strata)), 0.3, seed=5)
    assert [splits[t] == "test" for t in ids] == stratified_subset(ids, strata, 7, seed=5)
    # 0.2 of six tracks is one, but each of the three genres gets one (and keeps one in train).
    small = assign_splits([(f"x{i}", i % 3) for i in range(6)], 0.2, seed=0)
    assert sorted(int(t[1:]) % 3 for t, s in small.items() if s == "test") == [0, 1, 2]
    assert assign_splits(list(zip(ids, strata)), 0.0, seed=5) == {t: "train" for t in ids}


def _noise_tones(folder: Path, names: list[str], seconds: float = 2.0) -> None:
    """Short sine + noise mixes, one file per name (GTZAN-like clips)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    for i, name in enumerate(names):
        x = 0.3 * np.sin(2 * np.pi * (110.0 + 40.0 * i) * t) + 0.1 * rng.standard_normal(t.size)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / name, x.astype(np.float32), SR)


def _ingest_gtzan_style(tmp_path, genres, per_genre: int):
    """GTZAN-style audio (<genre>/<genre>.NNNNN.wav) and a path,genre CSV, ingested; (audio, files, root)."""
    audio = tmp_path / "gtzan"
    files = [f"{g}/{g}.{j:05d}.wav" for g in genres for j in range(per_genre)]
    _noise_tones(audio, files)
    (audio / "labels.csv").write_text("path,genre\n" + "".join(f"{f},{f.split('/')[0]}\n" for f in files))
    root = tmp_path / "out"
    assert main([str(audio), str(audio / "labels.csv"), "--out", str(root), "--clip-seconds", "2",
                 "--workers", "1", "--quiet"]) == 0
    return audio, files, root


def test_gtzan_style_genre_names_give_genres_txt(tmp_path):
    genres = ("blues", "country", "disco")
    audio, _, out = _ingest_gtzan_style(tmp_path, genres, per_genre=3)
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["converted"] == 9 and summary["vocabulary"] == list(genres)
    # A fifth of 9 is 2 tracks, but every genre keeps one test and one train track.
    assert summary["counts"]["fma_genre_spectrograms"] == {"train": 6, "test": 3}
    for name in ("fma_genre_spectrograms", "fma_genre_spectrograms_beat"):
        assert (out / name / "genres.txt").read_text() == "blues\ncountry\ndisco\n"
        for split in ("train", "test"):
            lines = (out / name / f"{split}_labels.txt").read_text().splitlines()
            assert lines[0] == "Id\tGenre"
            assert {line.split("\t")[1] for line in lines[1:]} == set(genres)
    assert mgr_io.genre_vocabulary(out, "fma_genre_spectrograms") == genres


@pytest.mark.parametrize("rows, message", [
    ("", "labels.csv: no labelled tracks"),
    ("a.wav,blues\nb.wav,\nc.wav,disco\n", "labels.csv:3: empty genre name"),
    ("a.wav,blues\nb.wav,blues\n", "labels.csv: a single genre 'blues'"),
])
def test_bad_open_label_sets_name_the_file(tmp_path, capsys, rows, message):
    from mgr_tf.core.cli import run_cli

    (tmp_path / "labels.csv").write_text("path,genre\n" + rows)
    assert run_cli(main, [str(tmp_path), str(tmp_path / "labels.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_beam_direct_runner_matches_local_output(audio_dir, genre_root, tmp_path):
    out = tmp_path / "beam"
    assert main([str(audio_dir), str(audio_dir / "genres.csv"), "--out", str(out), "--clip-seconds", str(CLIP),
                 "--test-fraction", "0.25", "--genre-vocabulary", "fma", "--quiet", "--beam",
                 "--runner=DirectRunner"]) == 0
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["converted"] == 12 and summary["skipped"]["corrupt"] == 1
    local, beam = tree_digest(genre_root), tree_digest(out)
    assert beam == local  # same sample bytes (hence arrays) and same label files
    assert not (out / ".ingest_beam").exists()


def test_cli_errors_name_the_file(audio_dir, tmp_path, capsys):
    from mgr_tf.core.cli import run_cli

    assert run_cli(main, [str(audio_dir), str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.csv: label file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("file;genre\nx.wav;Rock\n")
    assert run_cli(main, [str(audio_dir), str(bad), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:1: expected a header with a 'path' column" in capsys.readouterr().err
    assert run_cli(main, [str(audio_dir), str(audio_dir / "genres.csv"), "--out", str(tmp_path / "o"),
                          "--task", "multitask"]) == 2
    assert "--task multitask needs regression targets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(audio_dir), str(bad), "--out", "o", "--runner=DirectRunner"])
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--min-seconds" in capsys.readouterr().out


@pytest.mark.slow
def test_own_genre_names_go_from_audio_to_served_predictions(tmp_path, capsys):
    """A GTZAN-style CSV: ingest -> train -> export -> predict, and predictions name the user's genres."""
    from mgr_tf.predict import main as predict_main
    from mgr_tf.train import main as train_main

    genres = ("blues", "country", "disco", "reggae")
    audio, files, root = _ingest_gtzan_style(tmp_path, genres, per_genre=4)
    run = tmp_path / "run"
    assert train_main(["--data-dir", str(root), "--model", "cnn", "--epochs", "1", "--features", "fused", "--patch-frames", "32",
                       "--cnn-channels", "4", "4", "8", "8", "--batch-size", "4", "--val-fraction", "0.25",
                       "--out", str(run), "--export", "own", "--export-root", str(tmp_path / "exports")]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["class_names"] == list(genres) and set(report["metrics"]["genre"]["per_class"]) == set(genres)
    assert set(report["baseline"]["metrics"]["genre"]["per_class"]) == set(genres)  # the baseline, same classes
    export = tmp_path / "exports" / "own"
    assert (export / "1" / "assets" / "labels.txt").read_text() == "".join(f"{g}\n" for g in genres)
    capsys.readouterr()
    assert predict_main([str(export), str(audio / files[0]), "--json", "--top-k", "4"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["genre"] in genres and set(result["probabilities"]) == set(genres)


def test_a_root_with_every_clip_in_train_trains_and_cross_validates(tmp_path):
    """A CSV whose split column says train everywhere: ingest writes no test/ folder; train scores the validation
    split, cv folds the train split."""
    from mgr_tf.cv import main as cv_main
    from mgr_tf.train import main as train_main

    genres = ("blues", "country", "disco")
    audio = tmp_path / "audio"
    files = [f"{g}/{g}.{j:05d}.wav" for g in genres for j in range(4)]
    _noise_tones(audio, files)
    (audio / "labels.csv").write_text("path,genre,split\n" + "".join(f"{f},{f.split('/')[0]},train\n" for f in files))
    root = tmp_path / "root"
    assert main([str(audio), str(audio / "labels.csv"), "--out", str(root), "--clip-seconds", "2", "--workers", "1",
                 "--quiet", "--no-encoder"]) == 0
    assert not (root / "fma_genre_spectrograms" / "test").exists()
    run = tmp_path / "run"
    assert train_main(["--data-dir", str(root), "--model", "summary", "--out", str(run), "--export", "none"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["eval_split"] == "validation" and report["counts"]["test"] == 0
    out = tmp_path / "cv"
    assert cv_main([str(root), "--folds", "2", "--model", "summary", "--out", str(out), "--no-baseline"]) == 0
    result = json.loads((out / "cv_report.json").read_text())
    assert result["examples"] == len(files)


def test_fma_named_genres_of_a_plain_csv_are_the_users_vocabulary(tmp_path):
    """Emotify's labels (Classical, Electronic, Pop, Rock) happen to be FMA names: a plain CSV's genres are the
    vocabulary all the same (4 classes, not FMA's 10); `--genre-vocabulary fma` asks for FMA's mapping."""
    genres = ("Rock", "Pop", "Classical", "Electronic")
    audio = tmp_path / "audio"
    files = [f"{g.lower()}/{g.lower()}_{j}.wav" for g in genres for j in range(3)]
    _noise_tones(audio, files)
    (audio / "labels.csv").write_text("path,genre\n" + "".join(f"{f},{genres[i // 3]}\n" for i, f in enumerate(files)))
    own, fma = tmp_path / "own", tmp_path / "fma"
    for out, extra in ((own, []), (fma, ["--genre-vocabulary", "fma"])):
        assert main([str(audio), str(audio / "labels.csv"), "--out", str(out), "--clip-seconds", "2", "--workers", "1",
                     "--quiet", "--no-encoder", *extra]) == 0
    assert mgr_io.genre_vocabulary(own, "fma_genre_spectrograms") == tuple(sorted(genres))
    assert (own / "fma_genre_spectrograms" / "genres.txt").read_text().split() == sorted(genres)
    assert not (fma / "fma_genre_spectrograms" / "genres.txt").exists()
    assert len(mgr_io.genre_vocabulary(fma, "fma_genre_spectrograms")) == 20  # FMA's names, mapped 20 -> 10 in training
