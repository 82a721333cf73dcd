"""Pre-trained encoder: frozen musicnn embeddings (the default pair, MSD + MTT) + a linear head vs the baseline.

On Emotify (400 real clips from Magnatune, 4 genres; Aljanaki, Wiering and Veltkamp, "Studying emotion
induced by music through a crowdsourcing game", Information Processing & Management 2016), read from
`/work/shared/realdata/emotify/` or `$MGR_TF_REALDATA/emotify`, every clip is embedded with the frozen
ports of the default encoders, MSD_musicnn and MTT_musicnn (Pons and Serra, "musicnn: pre-trained convolutional
neural networks for music audio tagging", ISMIR-LBD 2019; `mgr_tf.models.musicnn`; `presets.DEFAULT_ENCODER`):
the two 200-d penultimate layers of each non-overlapping 3 s patch, concatenated (400-d) as `--model musicnn`
does, pooled over the clip by mean, mean+std or max. A standardised logistic regression on the pooled
embedding is compared, on the same 5 stratified folds (shuffled, seed 0), with a standardised logistic
regression on the per-band mean and std over time of the 22050 Hz fused features (128-band log-mel dB +
12 chroma, `mgr_tf.features.spectral.fused_features`). The pooling with the best mean CV accuracy is kept
(chosen on these same folds, so slightly optimistic; all three are recorded in `extra`).

Target: encoder accuracy >= baseline + 0.10. Two more rows time, side by side in one run, the embedding of
30 s clips (front end + network, from 16 kHz waveforms) and the default CNN's inference on 30 s clips (mfcc
front end + network, from 22050 Hz waveforms), in clips per second on this machine; the ratio is CNN seconds
over musicnn seconds (below 1: the encoder is slower).

The same comparison through the training path (`python -m mgr_tf.cv ROOT --model musicnn`, heads fitted on
frozen embeddings) is the musicnn row of `python -m mgr_tf.bench --only real`.

Embeddings and baseline features are cached under `~/.cache/mgr_tf/encoder_bench/` (`$MGR_TF_HOME`), keyed
by the clip list, so reruns only redo the cross-validation.

    python -m mgr_tf.bench --only encoder     (once registered in mgr_tf.bench.BENCHMARKS)
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mgr_tf.bench import Row, timeit
from mgr_tf.core.config import DataConfig, FeatureConfig
from mgr_tf.core.paths import cache_home
from mgr_tf.data.spec import resolve
from mgr_tf.features.spectral import AudioFeatures, fused_features, load_audio
from mgr_tf.models import model_config
from mgr_tf.models.build import build_model
from mgr_tf.models.musicnn.convert import encoder_file
from mgr_tf.models.musicnn.frontend import musicnn_frontend, resample_to_16k
from mgr_tf.models.musicnn.presets import DEFAULT_ENCODER, EMBEDDING_OUTPUT, SAMPLE_RATE, encoder_names
from mgr_tf.tasks import get_task
from mgr_tf.training.convex import DEFAULT_C, fit_softmax, softmax

MODEL_NAME = DEFAULT_ENCODER  # the taggers joined by "+", as --musicnn-encoder takes them
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
    path = cache_home() / "encoder_bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def musicnn_models(name: str = MODEL_NAME) -> list:
    """The converted port of each tagger in `name` (`mgr_tf.models.musicnn.convert.encoder_file`: converted once into
    the cache, the wheel fetched with pip once)."""
    return [keras.saving.load_model(encoder_file(n), compile=False) for n in encoder_names(name)]


def embedder(models: list):
    """patches -> the taggers' penultimate embeddings side by side, (patches, 200 * taggers)."""
    return lambda x: tf.concat([m(x, training=False)[EMBEDDING_OUTPUT] for m in models], axis=-1)


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
    path = _cache_dir() / f"emotify_{MODEL_NAME}_{CACHE_VERSION}_{_key(clips)}.npz"
    if path.exists():
        with np.load(path) as data:
            return dict(data)
    cfg = FeatureConfig()
    embed = tf.function(embedder(musicnn_models()), reduce_retracing=True)
    fused = tf.function(lambda y: fused_features(y, cfg), reduce_retracing=True)
    out = {k: [] for k in ("mean", "std", "max", "baseline", "patches")}
    started = time.time()
    for i, (clip, _) in enumerate(clips):
        audio = load_audio(clip, cfg)  # mono, 22050 Hz
        feats = fused(tf.constant(audio)).numpy()  # (frames, 140)
        out["baseline"].append(np.concatenate([feats.mean(axis=0), feats.std(axis=0)]))
        patches = musicnn_frontend(resample_to_16k(audio, cfg.sample_rate)).numpy()
        emb = embed(tf.constant(patches)).numpy()  # (patches, 200 per tagger)
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


def cv_accuracy(x: np.ndarray, y: np.ndarray, folds: int = FOLDS, c: float = 1.0, head: str = "sklearn"
                ) -> np.ndarray:
    """Per-fold accuracy of a standardised logistic regression (StratifiedKFold, shuffled, seed 0).

    Args:
        x, y: clip features and genre names.
        folds: number of folds.
        c: the inverse L2 strength (scikit-learn's C; 1 is its default).
        head: "sklearn" (LogisticRegression) or "mgr_tf" (the training path's closed-form head,
            `mgr_tf.training.convex.fit_softmax`, on the same standardised features).
    """
    scores = []
    classes, labels = np.unique(y, return_inverse=True)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(x, y):
        if head == "sklearn":
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
            model.fit(x[train], y[train])
            scores.append(model.score(x[test], y[test]))
            continue
        scaler = StandardScaler().fit(x[train])
        fit = fit_softmax(scaler.transform(x[train]), labels[train], len(classes), c=c)
        predicted = softmax(scaler.transform(x[test]), fit).argmax(axis=1)
        scores.append(float(np.mean(predicted == labels[test])))
    return np.asarray(scores)


def _throughput(quick: bool) -> list[Row]:
    """Embedding throughput vs the default CNN's inference on the same 30 s clips, timed alternately in one run.

    Both from waveforms, front end included, one clip per call: musicnn embeds 16 kHz audio (ten 3 s patches);
    the CNN (default size, random weights: the time does not depend on them) computes the default mfcc features
    from 22050 Hz audio in the graph and averages over its 256-frame windows (hop 128), as its serving_waveform.
    """
    embed_patches = embedder(musicnn_models())
    embed = tf.function(lambda w: embed_patches(musicnn_frontend(w)))
    data, cfg = DataConfig(), FeatureConfig()
    cnn = build_model(model_config("cnn"), get_task("genre"), num_bands=resolve(data).feature.bands(cfg),
                      frames=data.patch_frames,
                      window_hop=data.patch_frames // 2, num_classes=10)
    features = AudioFeatures.from_feature_config(cfg, bands=data.features)
    infer = tf.function(lambda w: cnn({"spectrogram": features(w[None])}, training=False)["genre"])
    count = 2 if quick else 8
    rng = np.random.default_rng(0)
    clips = {"musicnn": [tf.constant(0.1 * rng.standard_normal(30 * SAMPLE_RATE).astype(np.float32))
                         for _ in range(count)],
             "cnn": [tf.constant(0.1 * rng.standard_normal(30 * cfg.sample_rate).astype(np.float32))
                     for _ in range(count)]}
    fns = {"musicnn": embed, "cnn": infer}
    for name in fns:  # trace once outside the timing
        fns[name](clips[name][0]).numpy()
    seconds = {name: [] for name in fns}
    for _ in range(1 if quick else 3):  # alternate, so both see the same machine load
        for name, fn in fns.items():
            seconds[name].append(min(timeit(lambda: [fn(c).numpy() for c in clips[name]], repeat=1, warmup=0)) / count)
    best = {name: min(values) for name, values in seconds.items()}
    cpus = os.cpu_count()
    return [
        Row("encoder", f"{MODEL_NAME} embedding, 30 s clip at 16 kHz (front end + network), one clip a call",
            1.0 / best["musicnn"], "clips/s", ratio=best["cnn"] / best["musicnn"],
            baseline="default CNN inference (mfcc front end + windows) on the same machine, same run",
            extra={"seconds_per_clip": best["musicnn"], "patches_per_clip": 10, "cpus": cpus,
                   "note": "excludes decoding and resampling to 16 kHz"}),
        Row("encoder", "default CNN genre inference, 30 s clip at 22050 Hz (mfcc front end + windows), one clip a call",
            1.0 / best["cnn"], "clips/s", extra={"seconds_per_clip": best["cnn"], "cpus": cpus,
                                                 "params": int(cnn.count_params())}),
    ]


def run(quick: bool) -> list[Row]:
    """Emotify CV (baseline vs the frozen default encoders + linear head) and embedding throughput.

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
        # The training path's head (mean pooling, closed form at the default C) against scikit-learn on the same
        # embeddings and folds, at its default C = 1 and at the same C (issue 22: within 0.01 of it, or above).
        x = pooled(features, "mean")
        reference = encoders["mean"]  # scikit-learn at C = 1 on the mean-pooled embeddings, computed above
        same_c = cv_accuracy(x, genres, c=DEFAULT_C)
        ours = cv_accuracy(x, genres, c=DEFAULT_C, head="mgr_tf")
        rows.append(Row("encoder", f"Emotify frozen {MODEL_NAME}, mean pooling -> mgr_tf closed-form head "
                        f"(C {DEFAULT_C:g}, the --model musicnn default)", float(ours.mean()), "accuracy",
                        ratio=float(ours.mean() / reference.mean()),
                        baseline=f"scikit-learn LogisticRegression(C=1) on the same embeddings and folds "
                                 f"({reference.mean():.3f})", target="accuracy >= that - 0.01",
                        extra={"std": float(ours.std()), "folds": ours.tolist(), "sklearn_c1": reference.tolist(),
                               f"sklearn_c{DEFAULT_C:g}": same_c.tolist(),
                               "max_fold_difference_same_c": float(np.max(np.abs(ours - same_c))),
                               "met": bool(ours.mean() >= reference.mean() - 0.01)}))
    rows += _throughput(quick)
    return rows
