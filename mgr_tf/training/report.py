"""Evaluation reports: the numbers (report.json), a readable summary (report.md) and plots.

How a task's results are scored and shown depends on its kind: classification metrics are scikit-learn's
(`classification_report`, `confusion_matrix`), so they are the same numbers users get elsewhere, with a
confusion-matrix plot; regression metrics are the exact Spearman (average ranks for ties), Pearson and MSE per
target, with a scatter plot each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import classification_report, confusion_matrix

from mgr_tf.core.plotting import plt
from mgr_tf.tasks import Task, task_of_outputs


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
    """Exact Spearman, Pearson, MSE and R² of one regression target.

    R² is the coefficient of determination, 1 - SSE / SST: 0 for predicting the mean of the truth, negative for
    worse (the figure the emotion literature reports beside Spearman).

    Args:
        y_true: (n,) true values.
        y_pred: (n,) predictions.
    """
    y_true = np.asarray(y_true, np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, np.float64).reshape(-1)
    constant = np.ptp(y_pred) == 0 or np.ptp(y_true) == 0
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = float("nan") if total == 0 else 1.0 - float(np.sum((y_true - y_pred) ** 2)) / total
    return {
        "spearman": float("nan") if constant else float(stats.spearmanr(y_true, y_pred).statistic),
        "pearson": float("nan") if constant else float(stats.pearsonr(y_true, y_pred).statistic),
        "mse": float(np.mean((y_true - y_pred) ** 2)),
        "r2": r2,
        "num_examples": int(len(y_true)),
    }


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path,
                          title: str = "") -> None:
    """Saves a confusion-matrix heat map with counts; rows are true classes."""
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


# ----------------------------------------------------------------------------------------------
# Per kind of task: the metrics, the few numbers a table shows, and report.md lines.


def evaluate(task: Task, y_true: Mapping, predictions: Mapping, *, class_names: Sequence[str],
             run_dir: Path | None = None, title: str = "") -> dict:
    """Report metrics ({output: {...}}) from the true values and predictions; plots into run_dir."""
    if task.classification:
        metrics = {"genre": genre_metrics(np.asarray(y_true["genre"]), np.asarray(predictions["genre"]), class_names)}
        if run_dir is not None:
            plot_confusion_matrix(metrics["genre"]["confusion_matrix"], class_names,
                                  Path(run_dir) / "confusion_matrix.png", title=title)
        return metrics
    metrics = {}
    for name in task.outputs:
        t, p = np.reshape(y_true[name], -1), np.reshape(predictions[name], -1)
        metrics[name] = emotion_metrics(t, p)
        if run_dir is not None:
            plot_scatter(t, p, name, metrics[name], Path(run_dir) / f"scatter_{name}.png")
    return metrics


def headline(task: Task, metrics: Mapping) -> dict[str, float]:
    """The few numbers a table of runs shows: accuracy and macro-F1, or each target's Spearman (and their mean)."""
    if task.classification:
        return {"accuracy": metrics["genre"]["accuracy"], "macro F1": metrics["genre"]["macro_f1"]}
    values = {f"{name} Spearman": metrics[name]["spearman"] for name in task.outputs}
    if len(task.outputs) > 1:
        values["mean Spearman"] = float(np.mean([metrics[n]["spearman"] for n in task.outputs]))
        values["mean R²"] = float(np.mean([metrics[n].get("r2", np.nan) for n in task.outputs]))
    else:
        values[f"{task.outputs[0]} R²"] = metrics[task.outputs[0]].get("r2", np.nan)
    return values


def summary_line(task: Task, metrics: Mapping) -> str:
    """One readable line of the headline numbers."""
    return ", ".join(f"{k} {v:.3f}" for k, v in headline(task, metrics).items())


def metrics_markdown(task: Task, metrics: Mapping) -> list[str]:
    """report.md lines for the metrics."""
    if task.classification:
        g = metrics["genre"]
        lines = [f"Accuracy **{g['accuracy']:.3f}**, macro F1 **{g['macro_f1']:.3f}**, weighted F1 "
                 f"{g['weighted_f1']:.3f} on {g['num_examples']} clips.", "",
                 "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        rows = list(g["per_class"].items()) + [(f"*{label}*", g[key]) for label, key in
                                               (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg"))]
        for name, row in rows:
            lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} "
                         f"| {int(row['support'])} |")
        return lines + ["", "![confusion matrix](confusion_matrix.png)", ""]
    lines = ["| target | Spearman | Pearson | MSE | R² | n |", "|---|---|---|---|---|---|"]
    for name in task.outputs:
        m = metrics[name]
        lines.append(f"| {name} | {m['spearman']:.3f} | {m['pearson']:.3f} | {m['mse']:.4f} | {m.get('r2', np.nan):.3f} "
                     f"| {m['num_examples']} |")
    if len(task.outputs) > 1:
        lines.append(f"\nMean Spearman: **{np.mean([metrics[n]['spearman'] for n in task.outputs]):.3f}**, mean R² "
                     f"{np.mean([metrics[n].get('r2', np.nan) for n in task.outputs]):.3f}")
    return lines + [""] + [f"![{n}](scatter_{n}.png)" for n in task.outputs] + [""]


def render_markdown(report: Mapping) -> str:
    """A readable report.md from the report.json dict."""
    task = task_of_outputs(report["task"], report.get("targets"))
    lines = [f"# {report['title']}", "",
             f"Evaluated on the **{report['eval_split']}** split ({report['eval_split_reason']}).", ""]
    if report.get("model_reason"):
        lines += [f"Model **{report['model']}**: {report['model_reason']}.", ""]
    blend = report.get("blend")
    if blend:
        loss = blend["validation_log_loss"]
        lines += [f"Served: the {report['model']} blended with a {blend['partner']}, model weight "
                  f"**{blend['weight_model']:g}** (statistics {blend['weight_partner']:g}), the lowest log-loss on the "
                  f"{blend['validation_clips']} validation clips ({loss['blend']:.3f}; the model alone {loss['model']:.3f}, "
                  f"the statistics alone {loss['partner']:.3f}); "
                  "`--blend off` serves the model alone."
                  + (" The weight was chosen on the clips scored here (the test split has no labels)."
                     if blend.get("scored_on_choice_clips") else ""), ""]
    lines += metrics_markdown(task, report["metrics"])
    if report.get("baseline"):
        base = report["baseline"]
        ours = headline(task, report["metrics"])
        lines += ["## Against the summary-statistics baseline (same split)", "",
                  "| model | " + " | ".join(ours) + " |", "|---" * (len(ours) + 1) + "|",
                  f"| {report['model']}{' + statistics blend (served)' if blend else ''} | "
                  + " | ".join(f"{v:.3f}" for v in ours.values()) + " |",
                  *([f"| {report['model']} alone | " + " | ".join(f"{report['model_alone']['headline'][k]:.3f}"
                                                                for k in ours) + " |"] if blend else []),
                  *(["| wide statistics alone | " + " | ".join(f"{report['wide_alone']['headline'][k]:.3f}"
                                                              for k in ours) + " |"] if report.get("wide_alone") else []),
                  "| summary baseline | " + " | ".join(f"{base['headline'][k]:.3f}" for k in ours) + " |", ""]
        first = "mean Spearman" if "mean Spearman" in ours else next(iter(ours))
        if ours[first] < base["headline"][first]:
            lines += [f"**The model loses to the baseline** on {first}.", ""]
        elif ours[first] == base["headline"][first]:
            lines += [f"The model ties with the baseline on {first}.", ""]
    if report.get("overfit"):
        lines += ["Memorisation check (--overfit-batch), training-mode metrics of the last epoch: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in report["overfit"].items()), ""]
    lines += ["## Training", ""]
    fit = report.get("head_fit")
    if fit:
        lines += [f"Heads solved in closed form (L2-regularised logistic regression, C {fit['c']:g}) on the fixed "
                  f"features of {fit['clips']} clips ({' + '.join(fit['splits'])}) in {fit['seconds']:.1f} s.", ""]
    tune = report.get("finetune")
    if tune:
        lines += [f"Fine-tuning {'lowered' if tune['kept'] else 'did not lower'} the validation loss "
                  f"({tune['val_loss_before']:.4f} -> {tune['val_loss_after']:.4f}): "
                  f"{'its best epoch is kept' if tune['kept'] else 'the weights it started from are kept'}.", ""]
    if report["epochs_run"] or not fit:
        lines += [f"Epochs run: {report['epochs_run']}; wall time {report['train_seconds']:.0f} s.", "",
                  "![training curves](curves.png)", ""]
    if report.get("task_weights_plot"):
        lines += ["![learned task weights](task_weights.png)", ""]
    if report.get("export_dir"):
        lines += [f"Exported SavedModel: `{report['export_dir']}`", ""]
    lines += ["Reproduce: `" + report["command"] + "` (full settings in config.json).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Predictions of the scored split: predictions.csv beside report.json (cross-validation pools them).

PREDICTIONS = "predictions.csv"


def write_predictions(path: Path, task: Task, ids: Sequence[str], y_true: Mapping, predictions: Mapping,
                      class_names: Sequence[str]) -> None:
    """One row per scored clip: its id, then the truth and the prediction of each output (classification: the
    true and predicted class names and every class's probability)."""
    import csv

    if task.classification:
        header = ["id", "genre", "predicted", *[f"p_{c}" for c in class_names]]
        probs = np.asarray(predictions["genre"])
        rows = [[i, class_names[int(t)], class_names[int(np.argmax(p))], *[f"{v:.6g}" for v in p]]
                for i, t, p in zip(ids, np.reshape(y_true["genre"], -1), probs)]
    else:
        header = ["id", *[f"{n}{suffix}" for n in task.outputs for suffix in ("", "_predicted")]]
        columns = [np.reshape(d[n], -1) for n in task.outputs for d in (y_true, predictions)]
        rows = [[i, *[f"{c[k]:.6g}" for c in columns]] for k, i in enumerate(ids)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def read_predictions(path: Path, task: Task, class_names: Sequence[str]) -> tuple[list[str], dict, dict]:
    """(ids, y_true, predictions) of a `write_predictions` file, as `evaluate` takes them."""
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids = [r["id"] for r in rows]
    if task.classification:
        index = {c: k for k, c in enumerate(class_names)}
        return (ids, {"genre": np.array([index[r["genre"]] for r in rows])},
                {"genre": np.array([[float(r[f"p_{c}"]) for c in class_names] for r in rows])})
    return (ids, {n: np.array([float(r[n]) for r in rows]) for n in task.outputs},
            {n: np.array([float(r[f"{n}_predicted"]) for r in rows]) for n in task.outputs})
