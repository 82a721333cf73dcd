"""Figures of a trained genre run: CNN activation maps per genre (report 2) and a PCA of the embeddings (report 3).

The activation maps are the ReLU outputs of the first conv-BN-ReLU-maxpool blocks (`block<i>_relu`) for one
clip per genre of the evaluation split: per block the mean over channels and the three channels that respond
most strongly to that clip. The embeddings are the `embedding` layer's outputs (the input of the genre head)
for every clip of train, validation and test, projected on their first two principal components.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from matplotlib.lines import Line2D
from sklearn.decomposition import PCA

from mgr_tf.analysis.figures import pyplot, save, slug, write_index
from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DataConfig, from_dict
from mgr_tf.data import dataset_info, make_dataset
from mgr_tf.models.build import EMBEDDING_LAYER, load_keras_model
from mgr_tf.tasks import get_task

TOP_CHANNELS = 3
MARKERS = {"train": "o", "validation": "s", "test": "^"}


def _features_input(model):
    """The tensor the backbone sees: the fixed-length, normalised spectrogram when the model has those layers."""
    for name in ("fixed_length", "normalization"):
        try:
            return model.get_layer(name).output
        except ValueError:
            continue
    return model.input


def conv_blocks(model, blocks: int) -> list[str]:
    """Names of the first `blocks` conv-block outputs (`block<i>_relu`) present in `model`."""
    names = {layer.name for layer in model.layers}
    return [f"block{i}_relu" for i in range(1, blocks + 1) if f"block{i}_relu" in names]


def plot_activations(spectrogram: np.ndarray, maps: list[np.ndarray], names: list[str], title: str,
                     path: Path, input_title: str = "input to the CNN (normalised features)") -> Path:
    """The model's input (top) and per block the channel mean and the strongest channels.

    Args:
        spectrogram: (time, bands) input as the backbone sees it (normalised).
        maps: per block, (time, bands, channels) activations.
        names: per block, its layer name.
        title: figure title.
        path: PNG to write.
        input_title: title of the input panel.
    """
    plt = pyplot()
    cols = 1 + TOP_CHANNELS
    fig = plt.figure(figsize=(3.4 * cols, 2.6 * (1 + len(maps))))
    grid = fig.add_gridspec(1 + len(maps), cols)
    ax = fig.add_subplot(grid[0, :])
    im = ax.imshow(spectrogram.T, origin="lower", aspect="auto", cmap="magma")
    ax.set(title=input_title, xlabel="frame", ylabel="band")
    fig.colorbar(im, ax=ax, fraction=0.03, label="z-score")
    for row, (act, name) in enumerate(zip(maps, names), start=1):
        strongest = np.argsort(-act.mean(axis=(0, 1)))[:TOP_CHANNELS]
        panels = [(act.mean(axis=-1), f"{name}: mean of {act.shape[-1]} channels")]
        panels += [(act[..., c], f"{name}: channel {c}") for c in strongest]
        for col, (image, label) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            im = ax.imshow(image.T, origin="lower", aspect="auto", cmap="viridis")
            ax.set_title(label, fontsize=9)
            t, b = spectrogram.shape[0] / act.shape[0], spectrogram.shape[1] / act.shape[1]
            ax.set_xlabel("frame" + (f" (pooled x{t:.0f})" if t > 1 else ""))
            ax.set_ylabel("band" + (f" (pooled x{b:.0f})" if b > 1 else ""))
            fig.colorbar(im, ax=ax, fraction=0.05)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return save(fig, path)


def plot_pca(points: np.ndarray, labels: np.ndarray, splits: list[str], class_names, ratio, title: str,
             path: Path) -> Path:
    """Scatter of 2-D projections coloured by genre, marker by split."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 6.5))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    splits = np.asarray(splits)
    for k, name in enumerate(class_names):
        label = name  # one legend entry per genre: on its first split drawn
        for split, marker in MARKERS.items():
            sel = (labels == k) & (splits == split)
            if sel.any():
                ax.scatter(points[sel, 0], points[sel, 1], color=cmap(k % cmap.N), marker=marker, s=28, alpha=0.8,
                           edgecolors="none", label=label)
                label = None

    handles = [Line2D([], [], color="grey", marker=m, linestyle="none", label=s) for s, m in MARKERS.items()
               if (splits == s).any()]
    legend = ax.legend(title="genre", bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    ax.add_artist(legend)
    ax.legend(handles=handles, title="split", bbox_to_anchor=(1.02, 0), loc="lower left", fontsize=8)
    ax.set(xlabel=f"PC 1 ({ratio[0]:.0%} of the variance)", ylabel=f"PC 2 ({ratio[1]:.0%} of the variance)",
           title=title)
    fig.tight_layout()
    return save(fig, path)


def explore_run(run_dir: Path, out: Path, blocks: int = 2) -> Path:
    """Draws a genre run's figures into `out` and writes `out/index.md`; returns its path.

    Args:
        run_dir: a run folder of `python -m mgr_tf.train` (config.json, model.keras).
        out: output folder (created).
        blocks: how many of the first conv blocks to draw.

    Raises:
        UserError: not a genre (classification) run, or a model without an `embedding` layer.
    """
    config = json.loads((run_dir / "config.json").read_text())
    data = from_dict(DataConfig, config["data"])
    if not get_task(data.task).classification:
        raise UserError(f"{run_dir}: a {data.task} run; explore draws genre runs (activations and embeddings "
                        "per genre)")
    model = load_keras_model(run_dir)
    try:
        embedding = model.get_layer(EMBEDDING_LAYER).output
    except ValueError:
        raise UserError(f"{run_dir}: the model has no '{EMBEDDING_LAYER}' layer (not built by mgr_tf.models)") from None
    out.mkdir(parents=True, exist_ok=True)
    class_names = list(config["class_names"])
    names = conv_blocks(model, blocks)
    embed = keras.Model(model.input, embedding)
    # Run on one clip at a time: a patch-trained model's conv layers see (clips * windows) examples.
    activations = keras.Model(model.input, [_features_input(model), *(model.get_layer(n).output for n in names)])
    eval_split = "test" if dataset_info(data).test_labelled else "validation"

    vectors, labels, splits, firsts = [], [], [], {}
    for split in ("train", "validation", "test"):
        for features, targets in make_dataset(data, split, with_ids=True, shuffle=False):
            ids = features.pop("track_id").numpy()
            y = targets["genre"].numpy()
            keep = y >= 0
            vectors.append(np.asarray(embed.predict_on_batch(features))[keep])
            labels.append(y[keep])
            splits += [split] * int(keep.sum())
            if split == eval_split:
                for i in np.flatnonzero(keep):
                    firsts.setdefault(int(y[i]), (ids[i].decode(), features["spectrogram"][i:i + 1]))
        print(f"[explore] embeddings of the {split} split: {sum(len(v) for v in labels)} clips so far", flush=True)
    sections = []
    images = []
    if names:
        for k in sorted(firsts):
            track_id, clip = firsts[k]
            spectrogram, *maps = (np.asarray(o)[0] for o in activations.predict_on_batch({"spectrogram": clip}))
            title = (f"{class_names[k]}: {eval_split} clip {track_id} through run {run_dir.name} "
                     f"({config['model']['family'].upper()} on {data.features} features)")
            windowed = any(layer.name == "windows" for layer in model.layers)  # patch-trained: windows of the clip
            input_title = "input to the CNN (normalised features" + (
                f"; the clip's first window of {spectrogram.shape[0]} frames)" if windowed else ")")
            images.append(plot_activations(spectrogram, maps, names, title,
                                           out / f"activations_{slug(class_names[k])}.png", input_title).name)
        sections.append(("CNN activation maps", f"First {len(names)} conv blocks (ReLU outputs, after batch norm) for "
                         f"one {eval_split} clip per genre: the channel mean and the {TOP_CHANNELS} strongest "
                         "channels. Axes are the pooled frames and bands.", images))
    else:
        sections.append(("CNN activation maps", f"none: the {config['model']['family']} model has no conv blocks.", []))
    vectors, labels = np.concatenate(vectors), np.concatenate(labels)
    if len(vectors) >= 3 and vectors.shape[1] >= 2:
        pca = PCA(n_components=2).fit(vectors)
        png = plot_pca(pca.transform(vectors), labels, splits, class_names, pca.explained_variance_ratio_,
                       f"PCA of the '{EMBEDDING_LAYER}' layer of {run_dir.name} ({len(vectors)} clips)",
                       out / "embedding_pca.png")
        sections.append(("Embeddings", f"{vectors.shape[1]}-dimensional embeddings of every labelled clip, first two "
                         "principal components (fitted on all splits).", [png.name]))
    return write_index(out, f"Exploring run {run_dir}", sections)
