"""Tests of the synthetic corpus: exact layout and formats, determinism, learnability."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from mgr_tf.core.published import GENRE_MAP_20_TO_10, GENRES_20
from mgr_tf.data import layout
from mgr_tf.data.synth.corpus import _plan, generate_corpus
from mgr_tf.data.synth.styles import emotion_knobs, emotion_targets
from mgr_tf.synth import main


def _load(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return np.load(io.BytesIO(data), allow_pickle=False)


def _sample_path(split_dir: Path, name: str) -> Path:
    """The file a label names: the .npy.gz itself, or the plain .npy next to it."""
    gz = split_dir / name
    return gz if gz.exists() else split_dir / name[:-3]


def _genre_rows(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "Id\tGenre"
    return [tuple(line.split("\t")) for line in lines[1:]]


def _emotion_rows(path: Path) -> list[tuple[str, float, float, float]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "Id,valence,energy,danceability"
    rows = []
    for line in lines[1:]:
        track_id, *values = line.split(",")
        assert track_id.isdigit() and len(values) == 3
        rows.append((track_id, *map(float, values)))
    return rows


def test_layout_and_formats(tiny_corpus):
    root = Path(tiny_corpus)
    assert sorted(p.name for p in root.iterdir()) == sorted([*layout.SUB_DATASETS, layout.FEATURES_FILE])
    from mgr_tf.core.config import FeatureConfig
    from mgr_tf.data.prepare import data_feature_config

    assert data_feature_config(root) == FeatureConfig()
    suffixes = set()
    for name in layout.SUB_DATASETS:
        beat = name.endswith("_beat")
        for split in ("train", "test"):
            split_dir = root / name / split
            labels = root / name / f"{split}_labels.txt"
            if name.startswith("fma_genre"):
                rows = _genre_rows(labels)
                names = [r[0] for r in rows]
                assert all(n.endswith(".fused.full.npy.gz") for n in names)
                assert {g for _, g in rows} == set(GENRES_20), "all 20 genres in every split"
            else:
                rows = _emotion_rows(labels)
                names = [f"{r[0]}.fused.full.npy.gz" for r in rows]
            files = sorted(p.name for p in split_dir.iterdir())
            assert len(files) == len(names)
            for n in names:
                path = _sample_path(split_dir, n)
                assert path.exists(), path
                suffixes.add(path.suffix)
                array = _load(path)
                assert array.dtype == np.float32 and array.shape[0] == 140
                assert np.all(np.isfinite(array))
                if beat:
                    assert 3 <= array.shape[1] <= 40  # 6 s clips
                else:
                    assert array.shape[1] == 1 + int(6.0 * 22050) // 512
                # Rows 0..127 are log-mel dB (top-dB 80 below the peak), 128..139 chroma in [0, 1].
                assert array[:128].max() - array[:128].min() <= 80.0 + 1e-3
                assert 0.0 <= array[128:].min() and array[128:].max() <= 1.0 + 1e-6
    assert suffixes == {".npy", ".gz"}, "both plain and gzip-compressed samples"


def test_split_sizes_and_emotion_spread(tiny_corpus):
    root = Path(tiny_corpus)
    train = _genre_rows(root / layout.GENRE_FULL / "train_labels.txt")
    test = _genre_rows(root / layout.GENRE_FULL / "test_labels.txt")
    assert len(train) + len(test) == 60 and not {r[0] for r in train} & {r[0] for r in test}
    # The published mapping keeps 10 classes and drops five genres: both kinds are present.
    assert {GENRE_MAP_20_TO_10[g] for _, g in test} - {None} == set(filter(None, GENRE_MAP_20_TO_10.values()))
    rows = _emotion_rows(root / layout.MULTITASK_FULL / "train_labels.txt")
    rows += _emotion_rows(root / layout.MULTITASK_FULL / "test_labels.txt")
    values = np.array([r[1:] for r in rows])
    assert values.min() >= 0.0 and values.max() <= 1.0
    # Spread over most of [0, 1], not a tight cluster (checked on many draws of the target map).
    rng = np.random.default_rng(1)
    many = np.array([emotion_targets(emotion_knobs(rng), rng) for _ in range(2000)])
    assert np.all(np.percentile(many, 5, axis=0) < 0.3) and np.all(np.percentile(many, 95, axis=0) > 0.7)
    assert np.all(values.std(axis=0) > 0.1)


def test_deterministic_and_withheld_labels(tmp_path):
    a = generate_corpus(tmp_path / "a", seed=3, clips=40, duration=2.0, progress=False)
    b = generate_corpus(tmp_path / "b", seed=3, clips=40, duration=2.0, withhold_test_labels=True,
                        progress=False)
    assert a["counts"] == b["counts"]
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    withheld = {Path(n) / "test_labels.txt" for n in (layout.MULTITASK_FULL, layout.MULTITASK_BEAT)}
    assert set(files_a) - set(files_b) == withheld and set(files_b) <= set(files_a)
    for rel in files_b:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # Another seed draws other clips (the plan decides ids, splits and parameters before any audio).
    plan_a, plan_c = _plan(3, 40), _plan(4, 40)
    assert [c.track_id for c in plan_a[0]] != [c.track_id for c in plan_c[0]]
    assert [c.knobs for c in plan_a[1]] != [c.knobs for c in plan_c[1]]


def test_progress_in_a_log_is_a_few_plain_lines():
    from mgr_tf.core.cli import Progress

    log = io.StringIO()  # not a terminal
    with Progress(640, "synth", "clips", file=log) as bar:
        for _ in range(320):
            bar.update(2)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 10 <= len(lines) <= 11
    assert lines[-1].startswith("[synth] 640/640 clips (100%)")
    quiet = io.StringIO()
    with Progress(5, "synth", "clips", enabled=False, file=quiet) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--clips", "40", "--duration", "1.5", "--quiet"]) == 0
    assert "multitask_dataset_beat: train 32, test 8" in capsys.readouterr().out
    from mgr_tf.core.cli import run_cli

    assert run_cli(main, ["--out", str(tmp_path / "y"), "--clips", "10"]) == 2
    assert "clips must be at least 40" in capsys.readouterr().err


def _summary_features(array: np.ndarray) -> np.ndarray:
    """Clip-level descriptors: band means and deviations, key-independent interval and triad
    strengths of the chroma (major vs minor), and the autocorrelation of an onset curve (tempo,
    regularity)."""
    mel, chroma = array[:128], array[128:]
    intervals = [np.mean(np.sum(chroma * np.roll(chroma, s, axis=0), axis=0)) for s in range(1, 7)]
    # Best-matching major and minor triad per frame (12 rotations each), averaged over time.
    triads = np.zeros((2, 12, 12))
    for r in range(12):
        triads[0, r, [r, (r + 4) % 12, (r + 7) % 12]] = 1.0
        triads[1, r, [r, (r + 3) % 12, (r + 7) % 12]] = 1.0
    fits = np.einsum("mrc,ct->mrt", triads, chroma).max(axis=1)
    intervals += [fits[0].mean(), fits[1].mean(), np.mean(fits[0] > fits[1])]
    onset = np.maximum(0.0, np.diff(mel, axis=1)).mean(axis=0)
    onset = onset - onset.mean()
    ac = np.correlate(onset, onset, "full")[onset.size - 1:]
    rhythm = ac[1:60] / (ac[0] + 1e-9)
    rhythm = np.concatenate([rhythm, [rhythm[9:].max(), onset.std()]])  # pulse clarity
    return np.concatenate([mel.mean(axis=1), mel.std(axis=1), chroma.std(axis=1), intervals, rhythm])


@pytest.mark.slow
def test_learnable(tmp_path):
    """Time-averaged features already separate the 10 classes and predict the emotions."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path / "corpus"
    generate_corpus(root, seed=1, clips=200, duration=4.0, progress=False)
    x, y = [], []
    for split in ("train", "test"):
        for name, genre in _genre_rows(root / layout.GENRE_FULL / f"{split}_labels.txt"):
            mapped = GENRE_MAP_20_TO_10[genre]
            if mapped:
                x.append(_summary_features(_load(_sample_path(root / layout.GENRE_FULL / split, name))))
                y.append(mapped)
    x, y = np.array(x), np.array(y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    accuracy = float(np.mean(cross_val_predict(clf, x, y, cv=5) == y))
    assert accuracy > 0.5, f"10-class accuracy {accuracy:.2f} (chance 0.1)"

    x, t = [], []
    for split in ("train", "test"):
        for track_id, *targets in _emotion_rows(root / layout.MULTITASK_FULL / f"{split}_labels.txt"):
            path = _sample_path(root / layout.MULTITASK_FULL / split, f"{track_id}.fused.full.npy.gz")
            x.append(_summary_features(_load(path)))
            t.append(targets)
    x, t = np.array(x), np.array(t)
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 3, 9)))
    pred = cross_val_predict(reg, x, t, cv=5)
    rhos = [spearmanr(pred[:, i], t[:, i]).statistic for i in range(3)]
    assert min(rhos) > 0.3, f"Spearman valence/energy/danceability {np.round(rhos, 2)}"
