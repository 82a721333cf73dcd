"""Evaluation reports: the numbers (report.json), a readable summary (report.md) and plots.

Genre metrics are scikit-learn's (`classification_report`, `confusion_matrix`) so they are the same
numbers users get elsewhere; emotion metrics are the exact Spearman (average ranks for ties), Pearson and
MSE per target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def genre_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]) -> dict:
    """Per-class precision/recall/F1/support, accuracy, macro and weighted averages, confusion matrix.

    The averages cover the classes that occur in the true or predicted labels (scikit-learn's default),
    so a class with no example in the data (e.g. six of the published ten on a four-genre collection
    labelled with FMA names) does not pull macro-F1 down.

    Args:
        y_true: (n,) int class indices.
        probabilities: (n, classes) predicted probabilities.
        class_names: names of the classes, in index order.
    """
    from sklearn.metrics import classification_report, confusion_matrix

    y_pred = np.argmax(probabilities, axis=-1)
    labels = list(range(len(class_names)))
    report = classification_report(y_true, y_pred, labels=labels, target_names=list(class_names),
                                   output_dict=True, zero_division=0)
    present = sorted(set(np.asarray(y_true).tolist()) | set(y_pred.tolist()))
    averages = classification_report(y_true, y_pred, labels=present, output_dict=True, zero_division=0)
    for key in ("macro avg", "weighted avg"):
        report[key] = averages[key]
    return {
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else float("nan"),
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "weighted_f1": float(report["weighted avg"]["f1-score"]),
        "per_class": {name: {k: float(v) for k, v in report[name].items()} for name in class_names},
        "macro_avg": {k: float(v) for k, v in report["macro avg"].items()},
        "weighted_avg": {k: float(v) for k, v in report["weighted avg"].items()},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "num_examples": int(len(y_true)),
    }


def emotion_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Exact Spearman, Pearson and MSE of one emotion target.

    Args:
        y_true: (n,) true values.
        y_pred: (n,) predictions.
    """
    from scipy import stats

    y_true = np.asarray(y_true, np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, np.float64).reshape(-1)
    constant = np.ptp(y_pred) == 0 or np.ptp(y_true) == 0
    return {
        "spearman": float("nan") if constant else float(stats.spearmanr(y_true, y_pred).statistic),
        "pearson": float("nan") if constant else float(stats.pearsonr(y_true, y_pred).statistic),
        "mse": float(np.mean((y_true - y_pred) ** 2)),
        "num_examples": int(len(y_true)),
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path,
                          title: str = "") -> None:
    """Saves a confusion-matrix heat map with counts; rows are true classes."""
    plt = _pyplot()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(class_names), 0.8 + 0.55 * len(class_names)))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_history(history: Mapping[str, Sequence[float]], path: Path, title: str = "") -> None:
    """Saves training curves: one panel per metric, train and validation together."""
    plt = _pyplot()
    names = [k for k in history if not k.startswith("val_") and k not in ("learning_rate", "lr", "epoch")
             and not k.startswith("weight_")]
    names = names or list(history)
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        ax.plot(history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(history[f"val_{name}"], label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_task_weights(history: Mapping[str, Sequence[float]], path: Path) -> bool:
    """Saves the learned multitask weights over epochs, if the history has them; returns whether it did."""
    keys = sorted(k for k in history if k.startswith("weight_"))
    if not keys:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in keys:
        ax.plot(history[k], label=k.replace("weight_", ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel("exp(-s_t)")
    ax.set_title("learned task weights")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_scatter(y_true: np.ndarray, y_pred: np.ndarray, name: str, metrics: Mapping[str, float], path: Path) -> None:
    """Saves a predicted-vs-true scatter plot of one emotion target."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.scatter(y_true, y_pred, s=10, alpha=0.6)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    ax.set_title(f"{name}: Spearman {metrics['spearman']:.3f}, MSE {metrics['mse']:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_markdown(report: Mapping) -> str:
    """A readable report.md from the report.json dict."""
    from mgr_tf.tasks import get_task

    task = get_task(report["task"])
    lines = [f"# {report['title']}", "",
             f"Evaluated on the **{report['eval_split']}** split ({report['eval_split_reason']}).", ""]
    lines += task.markdown(report["metrics"])
    if report.get("baseline"):
        base = report["baseline"]
        ours = task.headline(report["metrics"])
        lines += ["## Against the summary-statistics baseline (same split)", "",
                  "| model | " + " | ".join(ours) + " |", "|---" * (len(ours) + 1) + "|",
                  f"| {report['model']} | " + " | ".join(f"{v:.3f}" for v in ours.values()) + " |",
                  "| summary baseline | " + " | ".join(f"{base['headline'][k]:.3f}" for k in ours) + " |", ""]
        first = next(iter(ours))
        if ours[first] < base["headline"][first]:
            lines += [f"**The model loses to the baseline** on {first}.", ""]
    if report.get("overfit"):
        lines += ["Memorisation check (--overfit-batch), training-mode metrics of the last epoch: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in report["overfit"].items()), ""]
    lines += ["## Training", "", f"Epochs run: {report['epochs_run']}; wall time {report['train_seconds']:.0f} s.",
              "", "![training curves](curves.png)", ""]
    if report.get("task_weights_plot"):
        lines += ["![learned task weights](task_weights.png)", ""]
    if report.get("export_dir"):
        lines += [f"Exported SavedModel: `{report['export_dir']}`", ""]
    lines += ["Reproduce: `" + report["command"] + "` (full settings in config.json).", ""]
    return "\n".join(lines)
