"""Results of a study: one row per trial and reference, the ranked table, the plot and best.json.

Rows are plain dicts (trial, kind, w_<target>, searched values, best_epoch, val_<target>_spearman, the
objective, tuner_id). The reference rows (equal, published 1.5/0.8/0.8 and learned uncertainty weights) are
trained once with the trials' epochs and seed and cached in run_dir/references.json.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import time
from pathlib import Path

import numpy as np

from mgr_tf.core.cli import flags_from_dataclass
from mgr_tf.core.config import DataConfig, to_dict
from mgr_tf.core.io import write_json, write_text
from mgr_tf.core.plotting import plt
from mgr_tf.training.runner import fingerprint
from mgr_tf.tuning.space import Setting, declare_hyperparameters, reference_settings, setting_configs
from mgr_tf.tuning.study import OBJECTIVE, Study


def _at_step(metrics, name: str, step: int | None) -> float | None:
    if not metrics.exists(name):
        return None
    history = metrics.get_history(name)
    for obs in history:
        if step is None or obs.step == step:
            value = obs.value
            return float(sum(value) / len(value)) if isinstance(value, (list, tuple)) else float(value)
    return None


def trial_rows(study: Study, tuner, run_dir: Path) -> list[dict]:
    """One row per finished trial of the oracle.

    Args:
        study: the study.
        tuner: the tuner (chief or local).
        run_dir: the run folder (for the `ran_by.json` files).
    """
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.status != "COMPLETED" or trial.score is None:
            continue
        setting = declare_hyperparameters(study, trial.hyperparameters.copy())
        ran_by = Path(run_dir) / "tuner" / f"trial_{trial.trial_id}" / "ran_by.json"
        row = {"trial": trial.trial_id, "kind": "trial",
               **{f"w_{t}": w for t, w in zip(study.targets, setting.weights)}, **dict(setting.values),
               "best_epoch": None if trial.best_step is None else int(trial.best_step) + 1,
               **{f"val_{t}_spearman": _at_step(trial.metrics, f"val_{t}_spearman", trial.best_step) for t in study.targets},
               OBJECTIVE: float(trial.score),
               "tuner_id": json.loads(ran_by.read_text())["tuner_id"] if ran_by.exists() else ""}
        rows.append(row)
    return rows


def _reference_fingerprint(study: Study, data: DataConfig, records: str) -> str:
    keep = {k: v for k, v in study.to_json().items() if k not in ("max_trials", "oracle", "description", "name")}
    return fingerprint({"study": keep, "data": to_dict(data), "records": records})


def reference_rows(study: Study, hypermodel, run_dir: Path) -> list[dict]:
    """Trains the reference rows once (same epochs and seed as the trials); cached in run_dir/references.json.

    Args:
        study: the study.
        hypermodel: the study's hypermodel (its data and builders).
        run_dir: the run folder.
    """
    cache_path = run_dir / "references.json"
    key = _reference_fingerprint(study, hypermodel.data, hypermodel.info.fingerprint)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if cache.get("fingerprint") != key:
        cache = {"fingerprint": key, "rows": {}}
    for name, setting in reference_settings(study).items():
        if name in cache["rows"]:
            print(f"[tune] reference '{name}': cached", flush=True)
            continue
        started = time.time()
        scores, per_target, epochs, weights = [], [], [], []
        for execution in range(study.executions_per_trial):
            hypermodel.execution = execution
            _model, fit_model = hypermodel.build_setting(setting)
            history = hypermodel.fit(None, fit_model).history
            curve = history.get(OBJECTIVE) or [float("nan")]
            best = max(range(len(curve)), key=lambda i: -math.inf if math.isnan(curve[i]) else curve[i])
            scores.append(curve[best])
            epochs.append(best + 1)
            per_target.append([history.get(f"val_{t}_spearman", [math.nan] * len(curve))[best] for t in study.targets])
            if setting.learned:
                learned = fit_model.task_weights()
                weights.append([learned[t] for t in study.targets])
        hypermodel.execution = 0
        mean = lambda xs: float(sum(xs) / len(xs))  # noqa: E731
        final_w = [mean([w[i] for w in weights]) for i in range(len(study.targets))] if weights else list(setting.weights)
        row = {"trial": f"ref:{name}", "kind": "reference",
               **{f"w_{t}": w for t, w in zip(study.targets, final_w)}, **dict(setting.values),
               "best_epoch": int(round(mean(epochs))),
               **{f"val_{t}_spearman": mean([p[i] for p in per_target]) for i, t in enumerate(study.targets)},
               OBJECTIVE: mean(scores), "tuner_id": "", "learned": setting.learned}
        cache["rows"][name] = row
        write_json(cache_path, cache)
        print(f"[tune] reference '{name}' weights: {OBJECTIVE} {row[OBJECTIVE]:.3f}, {time.time() - started:.0f} s",
              flush=True)
    return list(cache["rows"].values())


def _sort_key(row: dict):
    value = row.get(OBJECTIVE)
    return (value is None or math.isnan(value), -(value or 0.0))


def table_columns(study: Study) -> list[str]:
    """Column order of the results table.

    Args:
        study: the study.
    """
    return ["rank", "trial", "kind", *[f"w_{t}" for t in study.targets], *[k for k, _ in study.space], "best_epoch",
            *[f"val_{t}_spearman" for t in study.targets], OBJECTIVE, "tuner_id"]


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_results(study: Study, rows: list[dict], run_dir: Path, *, header: str = "") -> list[dict]:
    """Writes results.csv and results.md (best first) and the objective-vs-weights plot; returns sorted rows.

    Args:
        study: the study.
        rows: trial and reference rows.
        run_dir: the run folder.
        header: text placed above the Markdown table.
    """
    rows = sorted(rows, key=_sort_key)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    columns = table_columns(study)
    with open(run_dir / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
    lines = [f"# Study `{study.name}`", "", header, "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_fmt(row.get(k)) for k in columns]
        if row["kind"] == "reference" and row.get("learned"):
            cells[1] += " (final learned weights)"
        lines.append("| " + " | ".join(cells) + " |")
    write_text(run_dir / "results.md", "\n".join(lines) + "\n")
    plot_objective(study, rows, run_dir / "objective_vs_weights.png")
    return rows


def plot_objective(study: Study, rows: list[dict], path: Path) -> None:
    """Objective against each weight share and, for three targets, the trials on the weight simplex (barycentric),
    coloured by it.

    Args:
        study: the study.
        rows: the table rows.
        path: the PNG to write.
    """
    targets = study.targets

    def shares(row):
        w = np.array([row[f"w_{t}"] for t in targets], float)
        return w / w.sum() if w.sum() > 0 else w

    trials = [r for r in rows if r["kind"] == "trial" and not math.isnan(r[OBJECTIVE])]
    refs = [r for r in rows if r["kind"] == "reference" and not math.isnan(r[OBJECTIVE])]
    panels = len(targets) + (len(targets) == 3)
    cols = min(panels, 4)
    grid = int(math.ceil(panels / cols))
    fig, axes = plt.subplots(grid, cols, figsize=(4.5 * cols, 4.2 * grid), squeeze=False)
    axes = list(axes.flat)
    for i, t in enumerate(targets):
        ax = axes[i]
        ax.scatter([shares(r)[i] for r in trials], [r[OBJECTIVE] for r in trials], c="tab:blue", label="trials")
        for r, marker in zip(refs, "s^D"):
            ax.scatter([shares(r)[i]], [r[OBJECTIVE]], marker=marker, s=70, edgecolors="k", label=r["trial"])
        ax.set_xlabel(f"share of the {t} weight (w / sum w)")
        ax.set_ylabel("val mean Spearman" if i % cols == 0 else "")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if len(targets) == 3:
        ax = axes[3]
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
        ax.plot(*np.vstack([corners, corners[:1]]).T, color="grey", lw=1)
        for corner, t, align in zip(corners, targets, ["left", "right", "center"]):
            ax.text(corner[0], corner[1] + (0.04 if align == "center" else -0.07), t, fontsize=9, ha=align)
        points = [(shares(r) @ corners, r[OBJECTIVE]) for r in trials + refs]
        if points:
            xy = np.array([p for p, _ in points])
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=[v for _, v in points], cmap="viridis", edgecolors="k")
            fig.colorbar(sc, ax=ax, label="val mean Spearman")
            for (p, _), r in zip(points[len(trials):], refs):
                ax.annotate(r["trial"][4:], p, fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlim(-0.1, 1.1)
        ax.set_ylim(-0.12, 1.0)
        ax.set_aspect("equal")
        ax.set_title("weights on the simplex")
    for ax in axes[len(targets) + (len(targets) == 3):]:
        ax.axis("off")
    if len(targets) == 3:
        axes[3].axis("off")
    fig.suptitle(f"{study.name}: {OBJECTIVE} against the task weights ({len(trials)} trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary_header(study: Study, rows: list[dict]) -> str:
    """A few sentences above the table: best trial and its gain over the reference rows.

    Args:
        study: the study.
        rows: all rows.
    """
    trials = [r for r in rows if r["kind"] == "trial"]
    refs = {r["trial"]: r for r in rows if r["kind"] == "reference"}
    lines = [f"Oracle {study.oracle}, {len(trials)} finished trials of {study.epochs} epoch(s) each, "
             f"{study.model.upper()} on {study.features}{' beat-synced' if study.beat else ''} spectrograms, "
             f"seed {study.seed}. Objective: {OBJECTIVE} (mean validation Spearman of "
             f"{', '.join(study.targets)}), best epoch per row. Reference rows use the same epochs and seed."]
    if trials:
        best = min(trials, key=_sort_key)
        lines.append(f"Best trial {best['trial']}: weights " + ", ".join(f"{t} {best[f'w_{t}']:.3f}" for t in study.targets)
                     + f" -> {best[OBJECTIVE]:.4f}.")
        for name, ref in refs.items():
            lines.append(f"Gain over {name[4:]} weights: {best[OBJECTIVE] - ref[OBJECTIVE]:+.4f}.")
    return " ".join(lines)


def best_json(study: Study, rows: list[dict], tuner, data: DataConfig) -> dict:
    """best.json: the best trial's hyperparameters, weights and scores, and the train command that reproduces it.

    Args:
        study: the study.
        rows: the sorted rows.
        tuner: the tuner (for the trial's raw hyperparameters).
        data: the study's DataConfig.
    """
    trials = [r for r in rows if r["kind"] == "trial"]
    if not trials:
        return {}
    best = trials[0]
    weights = [best[f"w_{t}"] for t in study.targets]
    values = {k: best[k] for k, _ in study.space}
    model_cfg, train_cfg, regression = setting_configs(study, Setting(tuple(weights), False, tuple(values.items())))
    return {"trial_id": best["trial"], OBJECTIVE: best[OBJECTIVE],
            "weights": dict(zip(study.targets, weights)), "values": values,
            "val_spearman": {t: best[f"val_{t}_spearman"] for t in study.targets}, "best_epoch": best["best_epoch"],
            "hyperparameters": dict(tuner.oracle.trials[best["trial"]].hyperparameters.values),
            "best_overall": {"trial": rows[0]["trial"], OBJECTIVE: rows[0][OBJECTIVE]},
            "train_command": train_command(data, model_cfg, train_cfg, regression)}


def train_command(data: DataConfig, model_config, train_config, regression) -> str:
    """The `python -m mgr_tf.train` command that trains with these configs (flags that differ from defaults).

    Args:
        data: the DataConfig.
        model_config: the ModelConfig.
        train_config: the TrainConfig.
        regression: the RegressionConfig; its loss weights are always written.
    """
    flags = ["--task", data.task, "--model", model_config.family, "--features", data.features]
    # Fields the train parser sets itself (task, variable_length from the backbone) or does not expose.
    flags += flags_from_dataclass(data, skip=("task", "features", "variable_length", "cv_folds", "cv_fold"))
    # (a DataConfig's targets write as --targets a b ...: the flag the train parser reads them from)
    flags += flags_from_dataclass(model_config, skip=("family", "backbone"))
    flags += flags_from_dataclass(model_config.backbone)
    flags += flags_from_dataclass(train_config, rename={"learning_rate": "lr"})
    flags += flags_from_dataclass(regression, skip=("loss_weights",))
    flags += ["--loss-weights", *(f"{name}={float(w)!r}" for name, w in regression.loss_weights.items())]
    return "python -m mgr_tf.train " + " ".join(shlex.quote(f) for f in flags)
