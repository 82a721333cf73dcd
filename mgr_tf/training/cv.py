"""Stratified k-fold cross-validation (`python -m mgr_tf.cv DATA_ROOT --folds 5 [any train flag]`).

Train and the labelled test split are pooled and cut into k stratified folds (seeded); each fold is the
test split of one training run made by the same code as `python -m mgr_tf.train` (validation carved from
the other folds), and the summary-statistics baseline is trained on the same folds. The result is a table
of mean and standard deviation per model, a confusion matrix summed over the folds (classification), and
`cv_report.json` / `cv_report.md`. Finished folds are kept: rerunning the same command after a kill
continues with the next fold (and a fold killed mid-training resumes from its backup).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np

from mgr_tf.core.cli import UserError
from mgr_tf.core.io import write_json, write_text
from mgr_tf.core.plotting import plt
from mgr_tf.training import report as R
from mgr_tf.training.baseline import WIDE_DIR
from mgr_tf.training.blend import MODEL_PREDICTIONS
from mgr_tf.training.plan import Plan, check
from mgr_tf.training.runner import run


def fold_metrics(report: dict) -> dict[str, float]:
    """The headline numbers of one run's report (and of its baseline)."""
    return dict(report["headline"])


def summarise(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {metric: {"mean", "std"}}} over the fold rows ({"model", "fold", metric...})."""
    out: dict[str, dict] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        metrics = [k for k in mine[0] if k not in ("model", "fold", "seconds")]
        out[model] = {m: {"mean": float(np.mean([r[m] for r in mine])), "std": float(np.std([r[m] for r in mine]))}
                      for m in metrics + ["seconds"]}
    return out


def render_markdown(result: dict) -> str:
    """cv_report.md from the cv_report.json dict."""
    summary = result["summary"]
    metrics = [m for m in next(iter(summary.values())) if m != "seconds"]
    lines = [f"# {result['folds']}-fold cross-validation: {result['title']}", "",
             f"Data: `{result['data_root']}`, {result['examples']} clips, seed {result['seed']}. Reproduce: "
             f"`{result['command']}`", "",
             "| model | " + " | ".join(metrics) + " | seconds per fold |", "|---" * (len(metrics) + 2) + "|"]
    for model, values in summary.items():
        lines.append(f"| {model} | " + " | ".join(f"{values[m]['mean']:.3f} ± {values[m]['std']:.3f}" for m in metrics)
                     + f" | {values['seconds']['mean']:.0f} |")
    lines += ["", "Per fold:", "", "| model | fold | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for row in result["rows"]:
        lines.append(f"| {row['model']} | {row['fold']} | " + " | ".join(f"{row[m]:.3f}" for m in metrics) + " |")
    if result.get("blend_weights"):
        lines += ["", "Each fold serves the model blended with a linear model on every per-band statistic (`--blend "
                  "auto`; the wide statistics, a superset of the baseline's); the model's weight per fold, chosen on "
                  "the fold's validation clips: " + ", ".join("-" if w is None else f"{w:g}" for w in result["blend_weights"])
                  + ". The rows '... alone' are the model and the statistics model each on its own."]
    if result.get("pooled"):
        names = list(next(iter(result["pooled"].values())))
        lines += ["", "Pooled out-of-fold predictions (every clip scored once, by the fold that held it out):", "",
                  "| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {model} | " + " | ".join(f"{values[m]:.3f}" for m in names) + " |"
                  for model, values in result["pooled"].items()]
    if result.get("confusion_matrix"):
        lines += ["", "Confusion matrix summed over the folds (rows: true class):", "",
                  "![confusion matrix](confusion_matrix.png)", ""]
    return "\n".join(lines) + "\n"


def pooled_headlines(task, out, folds: int, class_names, *, baseline: bool) -> dict[str, dict[str, float]]:
    """The headline numbers over the out-of-fold predictions of all folds pooled (each clip scored once, by the
    fold that held it out): {"model": ..., "summary baseline": ...}; {} when a fold has no predictions.csv."""
    result = {}
    for name, sub, file in (("model", "", R.PREDICTIONS), ("model alone", "", MODEL_PREDICTIONS),
                            ("wide statistics alone", WIDE_DIR, R.PREDICTIONS),
                            ("summary baseline", "baseline", R.PREDICTIONS)):
        if name != "model" and not baseline:
            continue
        paths = [out / f"fold_{fold}" / sub / file for fold in range(folds)]
        if not all(p.is_file() for p in paths):
            continue
        parts = [R.read_predictions(p, task, class_names) for p in paths]
        y_true = {k: np.concatenate([part[1][k] for part in parts]) for k in parts[0][1]}
        predictions = {k: np.concatenate([part[2][k] for part in parts]) for k in parts[0][2]}
        result[name] = R.headline(task, R.evaluate(task, y_true, predictions, class_names=class_names))
    return result


def cross_validate(plan: Plan, folds: int) -> dict:
    """Runs the folds (skipping finished ones), writes cv_report.json / .md and returns the result dict.

    Args:
        plan: the run of every fold: its data (data_dir, task, features, seed, ...; the cv settings are set per
            fold), model, training and regression settings, `baseline` (the summary baseline on each fold too)
            and `run_dir`, the CV folder (fold_<i>/ run folders inside). Folds are not exported.
        folds: k.
    """
    if folds < 2:
        raise UserError(f"--folds must be at least 2, got {folds}")
    plan = check(plan)
    task, data, out, command = plan.spec.task, plan.data, plan.run_dir, plan.command
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "cv_config.json", {"command": command, "folds": folds, "data": dataclasses.asdict(data)})
    rows, matrices, reports = [], [], []
    for fold in range(folds):
        run_dir = out / f"fold_{fold}"
        done = run_dir / "report.json"
        if done.is_file():
            report = json.loads(done.read_text())
            print(f"[cv] fold {fold + 1}/{folds}: finished earlier, kept", flush=True)
        else:
            print(f"[cv] fold {fold + 1}/{folds}", flush=True)
            fold_data = dataclasses.replace(data, cv_folds=folds, cv_fold=fold)
            report = run(dataclasses.replace(plan, data=fold_data, run_dir=run_dir, export_name=None,
                                             command=f"{command} (fold {fold})"))
        reports.append(report)
        rows.append({"model": plan.model.family, "fold": fold, **fold_metrics(report),
                     "seconds": float(report["train_seconds"])})
        if report.get("model_alone"):  # the row above is the served blend; these the model and its partner alone
            rows.append({"model": f"{plan.model.family} alone", "fold": fold, **report["model_alone"]["headline"],
                         "seconds": float(report["train_seconds"])})
        if report.get("wide_alone"):
            rows.append({"model": "wide statistics alone", "fold": fold, **report["wide_alone"]["headline"],
                         "seconds": float(report["wide_alone"].get("train_seconds", 0.0))})
        if report.get("baseline"):
            rows.append({"model": "summary baseline", "fold": fold, **report["baseline"]["headline"],
                         "seconds": float(report["baseline"]["train_seconds"])})
        cm = report["metrics"].get("genre", {}).get("confusion_matrix") if task.classification else None
        if cm is not None:
            matrices.append(np.asarray(cm))
    result = {
        "title": reports[0]["title"], "folds": folds, "data_root": str(data.data_dir), "seed": data.seed,
        "examples": int(sum(r["counts"]["test"] for r in reports)), "command": command, "rows": rows,
        "summary": summarise(rows), "class_names": reports[0].get("class_names", []),
    }
    if any(r.get("blend") for r in reports):
        result["blend_weights"] = [r["blend"]["weight_model"] if r.get("blend") else None for r in reports]
    pooled = pooled_headlines(task, out, folds, result["class_names"], baseline=any(r.get("baseline") for r in reports))
    if pooled:
        result["pooled"] = {k.replace("model", plan.model.family): v for k, v in pooled.items()}
    if matrices:
        total = np.sum(matrices, axis=0)
        result["confusion_matrix"] = total.tolist()
        R.plot_confusion_matrix(total, result["class_names"], out / "confusion_matrix.png",
                                title=f"{plan.model.family}, {folds} folds summed")
    write_json(out / "cv_report.json", result)
    write_text(out / "cv_report.md", render_markdown(result))
    return result


def learning_curve(plan: Plan, folds: int, fractions: Sequence[float]) -> dict:
    """Cross-validation at growing shares of each fold's training clips (the same folds, validation and test
    clips at every share): the model and the baseline against training clips per class.

    Writes `learning_curve.json`, `learning_curve.md` and `learning_curve.png` into the plan's run folder (one
    cross-validation folder per share inside it) and returns the curve.

    Args:
        plan: as for `cross_validate`.
        folds: k.
        fractions: the shares of the training clips, each in (0, 1].
    """
    plan = check(plan)
    task, out = plan.spec.task, plan.run_dir
    points = []
    for fraction in sorted(set(float(f) for f in fractions)):
        print(f"[cv] learning curve: {fraction:g} of the training clips", flush=True)
        data = dataclasses.replace(plan.data, train_fraction=fraction)
        result = cross_validate(dataclasses.replace(plan, data=data, run_dir=out / f"fraction_{fraction:g}"), folds)
        reports = [json.loads((out / f"fraction_{fraction:g}" / f"fold_{k}" / "report.json").read_text())
                   for k in range(folds)]
        train_clips = float(np.mean([r["counts"]["train"] for r in reports]))
        classes = len(result["class_names"]) if task.classification else 1
        points.append({"fraction": fraction, "train_clips": train_clips, "clips_per_class": train_clips / classes,
                       "summary": result["summary"]})
    metric = next(m for m in points[0]["summary"][plan.model.family] if m != "seconds")
    curve = {"metric": metric, "folds": folds, "model": plan.model.family, "command": plan.command, "points": points}
    write_json(out / "learning_curve.json", curve)
    _plot_learning_curve(curve, out / "learning_curve.png", per_class=task.classification)
    lines = [f"# Learning curve: {plan.model.family}, {folds}-fold cross-validation", "",
             f"Reproduce: `{plan.command}`", "", "![learning curve](learning_curve.png)", "",
             f"| share of training clips | training clips{' per class' if task.classification else ''} | "
             + " | ".join(points[0]["summary"]) + " |", "|---" * (2 + len(points[0]["summary"])) + "|"]
    for p in points:
        x = p["clips_per_class"] if task.classification else p["train_clips"]
        lines.append(f"| {p['fraction']:g} | {x:.1f} | " + " | ".join(
            f"{s[metric]['mean']:.3f} ± {s[metric]['std']:.3f}" for s in p["summary"].values()) + " |")
    write_text(out / "learning_curve.md", "\n".join(lines) + "\n")
    return curve


def _plot_learning_curve(curve: dict, path, *, per_class: bool) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p["clips_per_class" if per_class else "train_clips"] for p in curve["points"]]
    for model in curve["points"][0]["summary"]:
        means = [p["summary"][model][curve["metric"]]["mean"] for p in curve["points"]]
        stds = [p["summary"][model][curve["metric"]]["std"] for p in curve["points"]]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=model)
    ax.set_xlabel("training clips per class" if per_class else "training clips")
    ax.set_ylabel(f"{curve['metric']} ({curve['folds']}-fold mean ± std)")
    ax.set_title(f"Learning curve: {curve['model']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
