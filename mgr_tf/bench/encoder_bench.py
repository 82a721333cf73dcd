"""Pre-trained encoder: frozen musicnn (MSD) embeddings + a linear head vs the summary-statistics baseline.

On Emotify (400 real clips from Magnatune, 4 genres; Aljanaki, Wiering and Veltkamp, "Studying emotion
induced by music through a crowdsourcing game", Information Processing & Management 2016), read from
`/work/shared/realdata/emotify/` or `$MGR_TF_REALDATA/emotify`, every clip is embedded with the frozen
MSD_musicnn port (Pons and Serra, "musicnn: pre-trained convolutional neural networks for music audio
tagging", ISMIR-LBD 2019; `mgr_tf.pretrained`): the 200-d penultimate layer of each non-overlapping 3 s
patch, pooled over the clip by mean, mean+std or max. A standardised logistic regression on the pooled
embedding is compared, on the same 5 stratified folds (shuffled, seed 0), with a standardised logistic
regression on the per-band mean and std over time of the 22050 Hz fused features (128-band log-mel dB +
12 chroma, `mgr_tf.audio.features.fused_features`). The pooling with the best mean CV accuracy is kept
(chosen on these same folds, so slightly optimistic; all three are recorded in `extra`).

Target: encoder accuracy >= baseline + 0.10. A second row times embedding (front end + network, from
16 kHz waveforms) in 30 s clips per second on this machine.

Embeddings and baseline features are cached under `~/.cache/mgr_tf/encoder_bench/` (`$MGR_TF_HOME`), keyed
by the clip list, so reruns only redo the cross-validation.

    python -m mgr_tf.bench --only encoder     (once registered in mgr_tf.bench.BENCHMARKS)
    python -m mgr_tf.bench.encoder_bench [--quick]
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mgr_tf.bench import Row, timeit

MODEL_NAME = "MSD_musicnn"
FOLDS = 5
SEED = 0
TARGET_GAIN = 0.10
POOLINGS = ("mean", "mean+std", "max")
CACHE_VERSION = "v1"


def emotify_dir() -> Path | None:
    """The Emotify folder (labels.csv + audio/), or None when this machine has none."""
    candidates = [Path(os.environ["MGR_TF_REALDATA"]) / "emotify"] if os.environ.get("MGR_TF_REALDATA") else []
    candidates.append(Path("/work/shared/realdata/emotify"))
    candidates += [p / "shared" / "realdata" / "emotify" for p in Path(__file__).resolve().parents]
    return next((c for c in candidates if (c / "labels.csv").is_file() and (c / "audio").is_dir()), None)


def _cache_dir() -> Path:
    from mgr_tf.paths import cache_home

    path = cache_home() / "encoder_bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def musicnn_model(name: str = MODEL_NAME):
    """The converted port of `name`, cached as a .keras file (the wheel is fetched with pip once)."""
    import keras

    from mgr_tf.paths import cache_home
    from mgr_tf.pretrained import convert

    out = cache_home() / "musicnn" / f"{name}.keras"
    if not out.exists():
        wheel_dir = cache_home() / "musicnn_wheel"
        wheels = sorted(wheel_dir.glob("musicnn-0.1.0-*.whl"))
        if not wheels:
            wheel_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps", "-d",
                            str(wheel_dir)], check=True, capture_output=True, timeout=600)
            wheels = sorted(wheel_dir.glob("musicnn-0.1.0-*.whl"))
        convert(name, out, wheel=wheels[0])
    return keras.saving.load_model(out)


def _clips(root: Path, per_genre: int | None) -> list[tuple[Path, str]]:
    with open(root / "labels.csv", newline="") as fh:
        rows = [(root / "audio" / r["path"], r["genre"]) for r in csv.DictReader(fh)]
    if per_genre is None:
        return rows
    kept, seen = [], {}
    for path, genre in rows:
        if seen.get(genre, 0) < per_genre:
            kept.append((path, genre))
            seen[genre] = seen.get(genre, 0) + 1
    return kept


def _key(clips: list[tuple[Path, str]]) -> str:
    h = hashlib.sha1()
    for path, genre in clips:
        st = path.stat()
        h.update(f"{path.name}|{genre}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:12]


def _features(clips: list[tuple[Path, str]]) -> dict[str, np.ndarray]:
    """Per clip: pooled musicnn embeddings (mean, std, max over patches) and the baseline's band statistics."""
    import tensorflow as tf

    from mgr_tf.audio.features import fused_features, load_audio
    from mgr_tf.config import FeatureConfig
    from mgr_tf.models.musicnn import EMBEDDING_OUTPUT, musicnn_frontend, resample_to_16k

    path = _cache_dir() / f"emotify_{MODEL_NAME}_{CACHE_VERSION}_{_key(clips)}.npz"
    if path.exists():
        with np.load(path) as data:
            return dict(data)
    cfg = FeatureConfig()
    model = musicnn_model()
    embed = tf.function(lambda x: model(x, training=False)[EMBEDDING_OUTPUT], reduce_retracing=True)
    fused = tf.function(lambda y: fused_features(y, cfg), reduce_retracing=True)
    out = {k: [] for k in ("mean", "std", "max", "baseline", "patches")}
    started = time.time()
    for i, (clip, _) in enumerate(clips):
        audio = load_audio(clip, cfg)  # mono, 22050 Hz
        feats = fused(tf.constant(audio)).numpy()  # (frames, 140)
        out["baseline"].append(np.concatenate([feats.mean(axis=0), feats.std(axis=0)]))
        patches = musicnn_frontend(resample_to_16k(audio, cfg.sample_rate)).numpy()
        emb = embed(tf.constant(patches)).numpy()  # (patches, 200)
        out["mean"].append(emb.mean(axis=0))
        out["std"].append(emb.std(axis=0))
        out["max"].append(emb.max(axis=0))
        out["patches"].append(len(emb))
        if (i + 1) % 50 == 0:
            print(f"[bench encoder] embedded {i + 1}/{len(clips)} clips ({time.time() - started:.0f} s)",
                  file=sys.stderr, flush=True)
    arrays = {k: np.asarray(v, np.float32 if k != "patches" else np.int32) for k, v in out.items()}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def pooled(features: dict[str, np.ndarray], pooling: str) -> np.ndarray:
    """The clip embedding for a pooling name in POOLINGS."""
    parts = {"mean": ("mean",), "mean+std": ("mean", "std"), "max": ("max",)}[pooling]
    return np.concatenate([features[p] for p in parts], axis=1)


def cv_accuracy(x: np.ndarray, y: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """Per-fold accuracy of a standardised logistic regression (StratifiedKFold, shuffled, seed 0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(x, y):
        head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        head.fit(x[train], y[train])
        scores.append(head.score(x[test], y[test]))
    return np.asarray(scores)


def _throughput(quick: bool) -> Row:
    import tensorflow as tf

    from mgr_tf.models.musicnn import EMBEDDING_OUTPUT, SAMPLE_RATE, musicnn_frontend

    model = musicnn_model()
    embed = tf.function(lambda w: model(musicnn_frontend(w), training=False)[EMBEDDING_OUTPUT])
    count = 2 if quick else 8
    rng = np.random.default_rng(0)
    clips = [tf.constant(0.1 * rng.standard_normal(30 * SAMPLE_RATE).astype(np.float32)) for _ in range(count)]

    def all_clips():
        for clip in clips:
            embed(clip).numpy()

    seconds = min(timeit(all_clips, repeat=1 if quick else 3)) / count
    return Row("encoder", f"{MODEL_NAME} embedding, 30 s clip at 16 kHz (front end + network), one clip a call",
               1.0 / seconds, "clips/s",
               extra={"seconds_per_clip": seconds, "patches_per_clip": 10, "cpus": os.cpu_count(),
                      "note": "excludes decoding and resampling to 16 kHz"})


def run(quick: bool) -> list[Row]:
    """Emotify CV (baseline vs frozen MSD_musicnn + linear head) and embedding throughput.

    Args:
        quick: 10 clips per genre unless the full set is already cached, 2 clips timed (a smoke run).
    """
    rows: list[Row] = []
    root = emotify_dir()
    if root is None:
        print("[bench encoder] Emotify CV skipped: no real data here (expected /work/shared/realdata/emotify/ "
              "with labels.csv and audio/, or $MGR_TF_REALDATA/emotify)", file=sys.stderr)
    else:
        clips = _clips(root, None)
        full_cached = (_cache_dir() / f"emotify_{MODEL_NAME}_{CACHE_VERSION}_{_key(clips)}.npz").exists()
        if quick and not full_cached:
            clips = _clips(root, 10)
        features = _features(clips)
        genres = np.asarray([g for _, g in clips])
        base = cv_accuracy(features["baseline"], genres)
        encoders = {p: cv_accuracy(pooled(features, p), genres) for p in POOLINGS}
        best = max(POOLINGS, key=lambda p: encoders[p].mean())
        enc = encoders[best]
        n = f"{len(clips)} clips, {len(set(genres))} genres, {FOLDS}-fold stratified CV (seed {SEED})"
        rows.append(Row("encoder", f"Emotify baseline: log-mel+chroma mean/std -> logistic regression ({n})",
                        float(base.mean()), "accuracy", extra={"std": float(base.std()), "folds": base.tolist()}))
        rows.append(Row("encoder", f"Emotify frozen {MODEL_NAME} penultimate, {best} pooling -> logistic regression",
                        float(enc.mean()), "accuracy", ratio=float(enc.mean() / base.mean()),
                        baseline="summary-statistics baseline, same folds",
                        target=f"accuracy >= baseline + {TARGET_GAIN:.2f}",
                        extra={"std": float(enc.std()), "folds": enc.tolist(), "pooling": best,
                               "gain": float(enc.mean() - base.mean()),
                               "met": bool(enc.mean() >= base.mean() + TARGET_GAIN),
                               "all_poolings": {p: {"mean": float(s.mean()), "std": float(s.std())}
                                                for p, s in encoders.items()},
                               "patches_per_clip_mean": float(features["patches"].mean())}))
    rows.append(_throughput(quick))
    return rows


if __name__ == "__main__":
    import argparse
    import dataclasses
    import json

    from mgr_tf.cli import quiet_tensorflow

    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="python -m mgr_tf.bench.encoder_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (subset unless cached)")
    args = parser.parse_args()
    for row in run(args.quick):
        print(json.dumps(dataclasses.asdict(row)))
