"""Ensembles of genre runs trained on different feature types (`python -m mgr_tf.ensemble RUN_DIR...`).

Report 3 (reference section 2) combined spectrogram, MFCC and chroma models by majority vote (0.57 against
0.55 for its best single model). This module loads trained genre runs, checks that they share a split and a
label set, predicts the shared test split with each member (each through its own data settings: feature
type, beat-synchronous or not, frames) aligned by track id, and scores the three rules of `rules`: majority
vote, highest mean probability and most confident member. It writes `ensemble_report.json` / `.md` with each
member's and each rule's accuracy, macro-F1 and confusion matrix, and with `--export NAME` one SavedModel
that serves the whole ensemble (`ensemble_export`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mgr_tf.analysis.ensemble_export import check_exportable, export_ensemble
from mgr_tf.analysis.rules import DESCRIPTIONS, METHODS, decide
from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DataConfig, FeatureConfig, from_dict
from mgr_tf.core.io import write_json, write_text
from mgr_tf.core.paths import DEFAULT_EXPORT_ROOT
from mgr_tf.data import dataset_info, make_dataset
from mgr_tf.models.build import load_keras_model
from mgr_tf.tasks import get_task
from mgr_tf.training.report import genre_metrics, plot_confusion_matrix

# DataConfig fields that decide which clips land in which split and under which labels. The others (feature
# type, beat, frames, batching) may differ between members: that is what an ensemble combines.
SPLIT_KEYS = ("data_dir", "task", "num_genres", "seed", "val_fraction", "cv_folds", "cv_fold", "train_fraction")
REPORT_NAME = "ensemble_report"


@dataclass(frozen=True)
class Member:
    """One trained run of an ensemble.

    Args:
        run_dir: the run folder (config.json, model.keras).
        config: its config.json.
        data: its data settings.
        feature_config: the settings its data's arrays were made with (n_mfcc included).
    """

    run_dir: Path
    config: dict
    data: DataConfig
    feature_config: FeatureConfig

    @property
    def label(self) -> str:
        """A short readable name: folder (model, feature type[, beat])."""
        beat = ", beat" if self.data.beat else ""
        return f"{self.run_dir.name} ({self.config.get('model', {}).get('family', '?').upper()}, " \
               f"{self.data.features}{beat})"


def load_member(run_dir: str | Path) -> Member:
    """Reads a run folder's config.json.

    Raises:
        UserError: no run folder, or a config.json this package cannot read (one line naming it).
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a training run folder (no config.json)")
    try:
        config = json.loads(path.read_text())
        data = from_dict(DataConfig, config["data"])
        features = from_dict(FeatureConfig, config.get("features", {}))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a run config of mgr_tf ({type(exc).__name__}: {exc})") from None
    # The data's FeatureConfig carries the run's n_mfcc (the pipeline copies it there).
    if features.n_mfcc != data.n_mfcc:
        features = dataclasses.replace(features, n_mfcc=data.n_mfcc)
    return Member(run_dir, config, data, features)


def _root(data_dir) -> str | None:
    return str(Path(data_dir).expanduser().resolve()) if data_dir else None


def check_members(members: Sequence[Member]) -> None:
    """Refuses, with one line, runs that cannot form an ensemble.

    Members must be genre (classification) runs with the same class names and the same split settings
    (`SPLIT_KEYS`: data root, seed, validation fraction, ...). Test ids are compared later, once the data
    is read (`aligned_predictions`).

    Raises:
        UserError: naming the runs and what differs.
    """
    if len(members) < 2:
        raise UserError(f"an ensemble needs at least two runs, got {len(members)}")
    for m in members:
        if not get_task(m.data.task).classification:
            raise UserError(f"{m.run_dir}: a {m.data.task} run; ensembles combine genre (classification) runs only")
    first = members[0]
    for m in members[1:]:
        for key in SPLIT_KEYS:
            a, b = first.config["data"].get(key), m.config["data"].get(key)
            if key == "data_dir":
                a, b = _root(a), _root(b)
            if a != b:
                raise UserError(f"{first.run_dir} and {m.run_dir} do not share a split: data {key} is {a!r} "
                                f"vs {b!r}")
        if list(first.config.get("class_names", [])) != list(m.config.get("class_names", [])):
            raise UserError(f"{first.run_dir} and {m.run_dir} have different label sets: "
                            f"{first.config.get('class_names')} vs {m.config.get('class_names')}")


def eval_split(members: Sequence[Member]) -> str:
    """"test" when every member's test split is labelled, else "validation" (shared: same seed and fraction)."""
    return "test" if all(dataset_info(m.data).test_labelled for m in members) else "validation"


def member_predictions(member: Member, model, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(track ids, true class, probabilities (n, classes)) of one member on `split`, in pipeline order."""
    ids, truth, probs = [], [], []
    for features, targets in make_dataset(member.data, split, with_ids=True):
        ids.extend(t.decode() for t in features.pop("track_id").numpy())
        truth.append(targets["genre"].numpy())
        probs.append(np.asarray(model.predict_on_batch(features)["genre"]))
    return ids, np.concatenate(truth), np.concatenate(probs)


def aligned_predictions(members: Sequence[Member], models, split: str
                        ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(track ids, true classes (n,), probabilities (members, n, classes)), every member in the first's order.

    Raises:
        UserError: members whose split holds different clips or labels.
    """
    ref_ids, ref_truth, stacked = None, None, []
    for i, (member, model) in enumerate(zip(members, models)):
        print(f"[ensemble] member {i}: predicting the {split} split with {member.label}", flush=True)
        ids, truth, probs = member_predictions(member, model, split)
        if ref_ids is None:
            ref_ids, ref_truth = ids, truth
            stacked.append(probs)
            continue
        if set(ids) != set(ref_ids):
            extra = sorted(set(ids) ^ set(ref_ids))
            raise UserError(f"{members[0].run_dir} and {member.run_dir} do not share a split: their {split} "
                            f"splits hold different clips ({len(ref_ids)} vs {len(ids)}; e.g. id {extra[0]})")
        order = np.asarray([ids.index(t) for t in ref_ids]) if ids != ref_ids else np.arange(len(ids))
        if not np.array_equal(truth[order], ref_truth):
            raise UserError(f"{members[0].run_dir} and {member.run_dir} label the same {split} clips differently")
        stacked.append(probs[order])
    return ref_ids, ref_truth, np.stack(stacked)


def score(y_true: np.ndarray, probabilities: np.ndarray, methods: Sequence[str], class_names: Sequence[str]
          ) -> tuple[list[dict], dict]:
    """Metrics of each member and each rule (see `mgr_tf.training.report.genre_metrics`).

    Args:
        y_true: (n,) true classes.
        probabilities: (members, n, classes).
        methods: rules to score (names in `rules.METHODS`).
        class_names: the classes, in index order.

    Returns:
        (per-member metrics, {method: metrics}).
    """
    members = [genre_metrics(y_true, p, class_names) for p in probabilities]
    num_classes = probabilities.shape[-1]
    rules = {m: genre_metrics(y_true, np.eye(num_classes)[decide(m, probabilities).numpy()], class_names)
             for m in methods}
    return members, rules


def evaluate(members: Sequence[Member], methods: Sequence[str], out_dir: Path, *, command: str = "",
             models=None) -> dict:
    """Scores the members and the rules on the shared split; writes the report and confusion matrices.

    Args:
        members: checked members (see `check_members`).
        methods: rules to score.
        out_dir: report folder (created).
        command: the command line, recorded in the report.
        models: the members' loaded Keras models (loaded from the run folders when None).

    Returns:
        The report dict (also written to `out_dir/ensemble_report.json` and `.md`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    models = models or [load_keras_model(m.run_dir) for m in members]
    class_names = list(members[0].config["class_names"])
    split = eval_split(members)
    ids, y_true, probs = aligned_predictions(members, models, split)
    member_metrics, rule_metrics = score(y_true, probs, methods, class_names)

    def entry(metrics: dict, png: str, title: str, **extra) -> dict:
        plot_confusion_matrix(metrics["confusion_matrix"], class_names, out_dir / png, title=title)
        return {**extra, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                "confusion_matrix_png": png, "metrics": metrics}

    report = {
        "title": f"ensemble of {len(members)} genre runs", "command": command, "eval_split": split,
        "num_examples": len(ids), "class_names": class_names, "track_ids": ids,
        "members": [entry(mm, f"confusion_member_{i}.png", f"member {i}: {m.label} ({split})",
                          run_dir=str(m.run_dir), label=m.label, features=m.data.features, beat=m.data.beat,
                          model=m.config.get("model", {}).get("family"))
                    for i, (m, mm) in enumerate(zip(members, member_metrics))],
        "methods": {name: entry(rm, f"confusion_{name}.png", f"ensemble, {name} ({split})",
                                description=DESCRIPTIONS[name])
                    for name, rm in rule_metrics.items()},
    }
    write_json(out_dir / f"{REPORT_NAME}.json", report)
    (out_dir / f"{REPORT_NAME}.md").write_text(render_markdown(report))
    return report


def render_markdown(report: dict) -> str:
    """The readable report: one table of members and rules, then the confusion matrices."""
    lines = [f"# {report['title']}", "", f"Scored on the shared **{report['eval_split']}** split "
             f"({report['num_examples']} clips, aligned by track id).", "",
             "| | accuracy | macro F1 | confusion matrix |", "|---|---|---|---|"]
    for i, m in enumerate(report["members"]):
        lines.append(f"| member {i}: {m['label']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
                     f"[png]({m['confusion_matrix_png']}) |")
    for name, m in report["methods"].items():
        lines.append(f"| **ensemble: {name}** | **{m['accuracy']:.3f}** | **{m['macro_f1']:.3f}** | "
                     f"[png]({m['confusion_matrix_png']}) |")
    lines += ["", "Rules:", ""] + [f"- **{name}**: {m['description']}." for name, m in report["methods"].items()]
    if report.get("export_dir"):
        lines += ["", f"Exported SavedModel: `{report['export_dir']}`"]
    lines.append("")
    for name, m in [*((f"member {i}", m) for i, m in enumerate(report["members"])), *report["methods"].items()]:
        lines += [f"![{name}]({m['confusion_matrix_png']})", ""]
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def run_ensemble(run_dirs: Sequence[str | Path], method: str = "all", out: Path | None = None, *, command: str = "",
                 export: str | None = None, export_root: str = DEFAULT_EXPORT_ROOT) -> dict:
    """Loads the runs, scores the ensemble rules on their shared split, writes the report, exports if asked.

    Args:
        run_dirs: run folders written by `python -m mgr_tf.train`.
        method: a rule of `rules.METHODS`, or "all" (every rule scored; majority vote behind the export).
        out: report folder (default: runs/ensemble_<member folder names joined by '+'>).
        command: the command line, recorded in the report.
        export: also export the ensemble as one SavedModel under this name.
        export_root: export root folder.

    Returns:
        The report dict (ensemble_report.json).
    """
    members = [load_member(d) for d in run_dirs]
    check_members(members)
    methods = list(METHODS) if method == "all" else [method]
    out = Path(out or Path("runs") / ("ensemble_" + "+".join(m.run_dir.name for m in members)))
    if export:
        check_exportable(members, export)  # refuse before the (long) evaluation
    models = [load_keras_model(m.run_dir) for m in members]
    report = evaluate(members, methods, out, command=command, models=models)
    if export:
        path = export_ensemble(members, models, export, method=methods[0], root=export_root,
                               metrics={k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]}
                                        for k, v in report["methods"].items()})
        report["export_dir"] = str(path)
        write_json(out / f"{REPORT_NAME}.json", report)
        write_text(out / f"{REPORT_NAME}.md", render_markdown(report))
    report["out"] = str(out)
    return report
