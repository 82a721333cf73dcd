"""Feature extraction throughput: in-graph TensorFlow fused features vs librosa on the same clips.

Both sides compute the 140-band fused features (log-mel dB + chroma) of 30 s clips at 22050 Hz;
the ratio TF / librosa is measured side by side in one run (target >= 1x).
"""

from __future__ import annotations

import functools

import librosa
import numpy as np
import tensorflow as tf

from mgr_tf.bench import Row, timeit
from mgr_tf.core.config import FeatureConfig
from mgr_tf.data.synth.corpus import STYLES, _genre_knobs, synthesize
from mgr_tf.features.spectral import fused_features


def _clips(count: int, seconds: float, sr: int) -> np.ndarray:
    out = []
    for i in range(count):
        rng = np.random.default_rng([7, i])
        style = STYLES["Rock"]
        out.append(synthesize(style, _genre_knobs(style, rng), seconds, sr, rng))
    return np.stack(out)


def _librosa_fused(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    power = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length)) ** 2
    mel = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=cfg.sample_rate, n_mels=cfg.n_mels),
                              ref=1.0, amin=1e-10, top_db=cfg.top_db)
    chroma = librosa.feature.chroma_stft(S=power, sr=cfg.sample_rate, tuning=0.0, n_chroma=cfg.n_chroma)
    return np.concatenate([mel, chroma], axis=0)


def run(quick: bool) -> list[Row]:
    """Clips per second of TF fused features (batch 1 and 16) and of librosa (one clip at a time).

    Args:
        quick: fewer clips and repeats (a smoke run).
    """
    cfg = FeatureConfig()
    seconds = 30.0
    batch = 4 if quick else 16
    repeat = 1 if quick else 3
    clips = _clips(batch, seconds, cfg.sample_rate)

    def librosa_all():
        for y in clips:
            _librosa_fused(y, cfg)

    lib_s = min(timeit(librosa_all, repeat=repeat)) / batch
    lib_rate = 1.0 / lib_s
    fn = tf.function(functools.partial(fused_features, cfg=cfg), autograph=False)
    single = tf.constant(clips[:1])
    full = tf.constant(clips)
    tf1_s = min(timeit(lambda: fn(single).numpy(), repeat=max(3, repeat * 3)))
    tfb_s = min(timeit(lambda: fn(full).numpy(), repeat=repeat)) / batch
    rows = [Row("features", "librosa mel+chroma, 30 s clip", lib_rate, "clips/s",
                extra={"seconds_per_clip": lib_s})]
    for name, s in (("TF fused, batch 1", tf1_s), (f"TF fused, batch {batch}", tfb_s)):
        rows.append(Row("features", name, 1.0 / s, "clips/s", ratio=lib_s / s, baseline="librosa",
                        target=">= 1x", extra={"seconds_per_clip": s}))
    return rows
