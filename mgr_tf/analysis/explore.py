"""The exploratory figures of the published reports (`python -m mgr_tf.explore [DATA_ROOT | RUN_DIR] --out DIR`).

For a dataset root (the layout of reference section 1; no argument = the embedded synthetic corpus) it draws:
a mel spectrogram and a chromagram of one clip per genre class (full-length and beat-synchronous side by side),
class counts before and after the 20 -> 10 genre mapping for train and test, the histogram of beat-synchronous
lengths, and the emotion targets' histograms and correlation matrix. For a trained CNN run folder
(`explore_run`): the activation maps of its first conv blocks for one clip per genre and a 2-D PCA of its
`embedding` layer coloured by genre. Every figure is a PNG listed with a caption in `DIR/index.md`.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import librosa
import numpy as np
from scipy import stats

from mgr_tf.analysis.figures import pyplot, save, slug, write_index
from mgr_tf.core.cli import UserError
from mgr_tf.core.config import BEAT_FRAMES, FeatureConfig, from_dict
from mgr_tf.core.published import GENRE_MAP_20_TO_10, GENRES_20
from mgr_tf.data import layout, readers

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


# ------------------------------------------------------------------------------------------ data root
def feature_config_of(root: Path) -> FeatureConfig:
    """The settings the root's arrays were made with (its features.json, else the published ones)."""
    path = root / "features.json"
    return from_dict(FeatureConfig, json.loads(path.read_text())) if path.is_file() else FeatureConfig()


def num_frames(path: Path) -> int:
    """Frames (columns) of a stored (bands, time) array, read from the .npy header only."""
    with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape = read(fh)[0]
    return int(shape[-1])


def _listing(root: Path, sub: str, split: str):
    try:
        return readers.list_split(root, sub, split, skip_bad=True)
    except FileNotFoundError:
        return None


def _mapped(vocabulary: tuple[str, ...]) -> dict[str, str | None]:
    """Raw genre -> class: the published 20 -> 10 mapping for FMA's names, identity for other label sets."""
    return dict(GENRE_MAP_20_TO_10) if tuple(vocabulary) == GENRES_20 else {g: g for g in vocabulary}


def plot_clip(full: np.ndarray, beat: np.ndarray | None, title: str, cfg: FeatureConfig, path: Path,
              with_beat: bool = True) -> Path:
    """Mel spectrogram (top) and chromagram (bottom) of one clip, full-length (left) and beat-synced (right).

    Args:
        full: the full-length (bands, time) array.
        beat: the beat-synchronous array of the same clip; None = the clip has none (the panel says so).
        title: figure title.
        cfg: the settings the arrays were made with (time and frequency axes).
        path: PNG to write.
        with_beat: draw the beat-synchronous column at all (False when the root has no such sub-dataset).
    """
    plt = pyplot()
    cols = 2 if with_beat else 1
    fig, axes = plt.subplots(2, cols, figsize=(12 if with_beat else 9, 6.5), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1.3][:cols]})
    seconds = full.shape[1] * cfg.hop_length / cfg.sample_rate
    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax or cfg.sample_rate / 2)[1:-1]
    mel_ticks = np.linspace(0, cfg.n_mels - 1, 5).round().astype(int)
    for col, (array, kind) in enumerate(((full, "full length"), (beat, "beat-synchronous"))[:cols]):
        mel_ax, chroma_ax = axes[0, col], axes[1, col]
        if array is None:
            for ax in (mel_ax, chroma_ax):
                ax.text(0.5, 0.5, "no beat-synchronous copy", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
            continue
        extent_x = (0, seconds) if col == 0 else (0, array.shape[1])
        xlabel = "time (s)" if col == 0 else "beat"
        im = mel_ax.imshow(array[:cfg.n_mels], origin="lower", aspect="auto", cmap="magma",
                           extent=(*extent_x, -0.5, cfg.n_mels - 0.5))
        mel_ax.set_yticks(mel_ticks, [f"{centres[i]:.0f}" for i in mel_ticks])
        mel_ax.set(title=f"log-mel, {kind}", xlabel=xlabel, ylabel="mel band centre (Hz)")
        fig.colorbar(im, ax=mel_ax, label="dB", fraction=0.05)
        im = chroma_ax.imshow(array[cfg.n_mels:cfg.n_mels + cfg.n_chroma], origin="lower", aspect="auto",
                              cmap="viridis", vmin=0, vmax=1, extent=(*extent_x, -0.5, cfg.n_chroma - 0.5))
        chroma_ax.set_yticks(range(cfg.n_chroma), PITCH_CLASSES[:cfg.n_chroma])
        chroma_ax.set(title=f"chroma, {kind}", xlabel=xlabel, ylabel="pitch class")
        fig.colorbar(im, ax=chroma_ax, label="energy (max = 1)", fraction=0.05)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return save(fig, path)


def plot_counts(raw: dict[str, Counter], mapped: dict[str, Counter], raw_names: Sequence[str],
                class_names: Sequence[str], path: Path) -> Path:
    """Grouped bars of train / test clips per raw genre (top) and per mapped class (bottom)."""
    plt = pyplot()
    panels = [(raw, raw_names, "before the mapping (raw genres)"), (mapped, class_names, "after the mapping (classes)")]
    if list(raw_names) == list(class_names):
        panels = [(raw, raw_names, "(the root's own genre names: no 20 -> 10 mapping applies)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(9, 0.55 * len(raw_names) + 2), 4 * len(panels)),
                             squeeze=False)
    for ax, (counts, names, what) in zip(axes[:, 0], panels):
        x = np.arange(len(names))
        for k, split in enumerate(counts):
            values = [counts[split].get(n, 0) for n in names]
            bars = ax.bar(x + (k - 0.5 * (len(counts) - 1)) * 0.4, values, 0.4, label=f"{split} ({sum(values)})")
            ax.bar_label(bars, fontsize=7)
        ax.set_xticks(x, names, rotation=40, ha="right")
        ax.set(ylabel="clips", title=f"clips per genre {what}")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save(fig, path)


def plot_lengths(lengths: dict[str, list[int]], path: Path) -> Path:
    """Histogram of beat-synchronous lengths per sub-dataset, with the published padding length."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    top = max(max(v) for v in lengths.values())
    width = max(1, int(np.ceil(top / 40)))
    bins = np.arange(0, top + 2 * width, width) - 0.5
    for name, values in lengths.items():
        ax.hist(values, bins=bins, alpha=0.6, label=f"{name} (n={len(values)}, median {np.median(values):.0f})")
    if top >= BEAT_FRAMES / 2:  # else the line would squeeze the histogram into a corner; the caption says it
        ax.axvline(BEAT_FRAMES, color="k", linestyle="--", label=f"published padding length {BEAT_FRAMES}")
    ax.set(xlabel="length (beats = frames of the beat-synchronous array)", ylabel="clips",
           title="lengths of the beat-synchronous spectrograms")
    ax.legend()
    fig.tight_layout()
    return save(fig, path)


def plot_emotions(values: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """Histograms of the regression targets (values (n, targets)), up to four a row."""
    plt = pyplot()
    cols = min(len(names), 4)
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), sharey=True, squeeze=False)
    for ax, name, column in zip(axes.flat, names, values.T):
        ax.hist(column, bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white")
        ax.axvline(np.mean(column), color="k", linestyle="--", label=f"mean {np.mean(column):.2f}")
        ax.set(xlabel=f"{name} (0..1)", title=name)
        ax.legend()
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("clips")
    fig.suptitle(f"regression targets ({len(values)} labelled clips)")
    fig.tight_layout()
    return save(fig, path)


def plot_correlations(values: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """Pearson (lower-left annotation) correlation matrix of the regression targets, with Spearman beside."""
    plt = pyplot()
    k = len(names)
    pearson = np.atleast_2d(np.corrcoef(values.T))
    spearman = np.atleast_2d(stats.spearmanr(values).statistic) if k > 1 else np.ones((1, 1))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * k, 1.2 + 1.2 * k))
    im = ax.imshow(pearson, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(k), names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), names)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"r {pearson[i, j]:.2f}\nρ {spearman[i, j]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if abs(pearson[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, label="Pearson r")
    ax.set_title(f"correlation of the regression targets (n={len(values)})\nr = Pearson, ρ = Spearman")
    fig.tight_layout()
    return save(fig, path)


def explore_data(root: Path, out: Path) -> Path:
    """Draws the dataset figures of `root` into `out` and writes `out/index.md`; returns its path.

    Raises:
        UserError: the root has neither genre nor emotion sub-datasets.
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg = feature_config_of(root)
    sections = []
    genre = {split: _listing(root, layout.GENRE_FULL, split) for split in layout.SPLITS}
    beat = {split: _listing(root, layout.GENRE_BEAT, split) for split in layout.SPLITS}
    if genre["train"] is not None:
        vocabulary = readers.genre_vocabulary(root, layout.GENRE_FULL)
        mapping = _mapped(vocabulary)
        class_names = list(dict.fromkeys(c for c in mapping.values() if c))
        raw = {s: Counter(e.genre for e in genre[s].examples if e.genre) for s in layout.SPLITS if genre[s]}
        mapped = {s: Counter(mapping[g] for g in c.elements() if mapping[g]) for s, c in raw.items()}
        table = ["| class | train | test |", "|---|---|---|"] + [
            f"| {c} | {mapped['train'].get(c, 0)} | {mapped.get('test', Counter()).get(c, 0)} |" for c in class_names]
        dropped = ", ".join(g for g, c in mapping.items() if not c)
        caption = (f"Before and after the 20 -> 10 mapping (dropped: {dropped})." if tuple(vocabulary) == GENRES_20
                   else "The root's own genre names (its genres.txt): no 20 -> 10 mapping applies.")
        sections.append(("Clips per genre", caption + "\n\n" + "\n".join(table),
                         [plot_counts(raw, mapped, list(vocabulary), class_names, out / "class_counts.png").name]))
        beat_paths = {e.track_id: e.path for s in layout.SPLITS if beat[s] for e in beat[s].examples}
        images = []
        for name in class_names:
            example = next((e for s in layout.SPLITS if genre[s] for e in genre[s].examples
                            if e.genre and mapping[e.genre] == name), None)
            if example is None:
                continue
            full = readers.load_spectrogram(example.path)
            beat_path = beat_paths.get(example.track_id)
            beat_array = readers.load_spectrogram(beat_path) if beat_path else None
            title = f"{name}: track {example.track_id}"
            if example.genre != name:
                title += f" (raw genre {example.genre})"
            images.append(plot_clip(full, beat_array, title, cfg, out / f"spectrograms_{slug(name)}.png",
                                    with_beat=bool(beat_paths)).name)
        print(f"[explore] {len(images)} genre spectrogram figures", flush=True)
        sections.append(("One clip per genre", "Log-mel (dB) and chroma of the first clip of each class, "
                         + ("full-length (left) and beat-synchronous (right)." if beat_paths else
                            f"full-length (the root has no {layout.GENRE_BEAT}/)."), images))
    else:
        sections.append(("Genres", f"none: the root has no {layout.GENRE_FULL}/.", []))
    lengths = {}
    for sub in (layout.GENRE_BEAT, layout.MULTITASK_BEAT):
        paths = [e.path for s in layout.SPLITS if (lst := _listing(root, sub, s)) for e in lst.examples]
        if paths:
            lengths[sub] = [num_frames(p) for p in paths]
    if lengths:
        text = "; ".join(f"{k}: {min(v)}..{max(v)} beats, median {np.median(v):.0f}" for k, v in lengths.items())
        text += f" (published code pads or crops to {BEAT_FRAMES})."
        sections.append(("Beat-synchronous lengths", text, [plot_lengths(lengths, out / "beat_lengths.png").name]))
    else:
        sections.append(("Beat-synchronous lengths", "none: the root has no beat-synchronous sub-dataset.", []))
    emotion = [lst for s in layout.SPLITS if (lst := _listing(root, layout.MULTITASK_FULL, s)) and lst.labelled]
    values = np.asarray([e.targets for lst in emotion for e in lst.examples if e.targets], np.float64)
    if len(values) >= 3:
        names = readers.regression_targets(root, layout.MULTITASK_FULL)
        sections.append(("Emotion targets", f"{len(values)} labelled clips (train and any labelled test split); "
                         f"targets {', '.join(names)}.",
                         [plot_emotions(values, names, out / "emotion_histograms.png").name,
                          plot_correlations(values, names, out / "emotion_correlations.png").name]))
    else:
        sections.append(("Emotion targets", f"none: the root has no labelled {layout.MULTITASK_FULL}/.", []))
    if not any(images for _, _, images in sections):
        raise UserError(f"{root}: no genre or emotion sub-dataset found (expected {', '.join(layout.SUB_DATASETS)})")
    return write_index(out, f"Exploring {root}", sections)
