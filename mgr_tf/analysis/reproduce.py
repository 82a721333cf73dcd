"""Every research topic, one run each, in one table (`python -m mgr_tf.reproduce [--data-dir ROOT] [--quick]`).

Runs each topic of the README's research table (and the MEL / chroma / MFCC models with their ensemble, as
report 3 did) with the same code as `python -m mgr_tf.train`, then writes `reproduce.md` / `reproduce.json`:
topic, metric, this run's number, the published number on this data (the shared reference, section 2) and a
link to each run's report. Finished topics are kept: rerunning continues where a killed run stopped.
`--quick` is the smoke version (1 epoch, tiny sizes) that CI can afford; its numbers are not results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mgr_tf.analysis import ensemble
from mgr_tf.core.io import write_json, write_text
from mgr_tf.data.layout import sub_datasets
from mgr_tf.tasks import get_task
from mgr_tf.training.flags import build_parser, parse_args, plan_from_args
from mgr_tf.training.runner import run


@dataclass(frozen=True)
class Topic:
    """One research topic.

    Args:
        name: run folder name and table row key.
        title: what it is, in words.
        flags: `python -m mgr_tf.train` flags.
        metric: (output, metric) read from the run's report metrics, e.g. ("genre", "accuracy").
        published: the published number on this data and where it comes from ("" when there is none).
        after: topics that must finish first (transfer needs the genre run).
    """

    name: str
    title: str
    flags: tuple[str, ...]
    metric: tuple[str, str]
    published: str = ""
    after: tuple[str, ...] = ()


GENRE = ("genre", "accuracy")
TOPICS: tuple[Topic, ...] = (
    Topic("genre_cnn", "genre, 2D CNN (the default)", ("--task", "genre", "--model", "cnn"), GENRE,
          "0.35 (report 1, beat-synced) / 0.466 (report 2)"),
    Topic("genre_lstm_beat", "genre, LSTM on beat-synced fused features", (
        "--task", "genre", "--model", "lstm", "--beat", "--lstm-frame-stride", "1"), GENRE,
          "0.29 (report 1) / 0.377 (report 2)"),
    Topic("genre_ast", "genre, AST tiny", ("--task", "genre", "--model", "ast"), GENRE,
          "0.464 (report 2, ImageNet-pretrained AST)"),
    Topic("genre_cnn_20", "genre, 20 classes", ("--task", "genre", "--num-genres", "20"), GENRE),
    Topic("valence", "valence, MSE + soft-rank Spearman", ("--task", "valence", "--spearman-weight", "1.0"),
          ("valence", "spearman"), "0.59 (report 2, AST)"),
    Topic("valence_pairwise", "valence, pairwise soft ranks", (
        "--task", "valence", "--spearman-method", "pairwise"), ("valence", "spearman"), "0.59 (report 2, AST)"),
    Topic("energy_transfer", "energy, transfer from the genre CNN", ("--task", "energy"), ("energy", "spearman"),
          after=("genre_cnn",)),
    Topic("multitask_equal", "multitask, equal weights", ("--task", "multitask"), ("energy", "spearman")),
    Topic("multitask_published", "multitask, weights 1.5 / 0.8 / 0.8", (
        "--task", "multitask", "--loss-weights", "published"), ("energy", "spearman"), "0.70 (report 2, arousal)"),
    Topic("multitask_learned", "multitask, learned uncertainty weights", ("--task", "multitask", "--learned-weights"),
          ("energy", "spearman")),
    Topic("danceability", "danceability, MSE + soft-rank Spearman", ("--task", "danceability"),
          ("danceability", "spearman"), "0.65 (report 2, AST)"),
    Topic("genre_cnn_mel", "genre, CNN on mel", ("--task", "genre", "--features", "mel"), GENRE),
    Topic("genre_cnn_chroma", "genre, CNN on chroma", ("--task", "genre", "--features", "chroma"), GENRE),
    Topic("genre_cnn_mfcc", "genre, CNN on MFCC", ("--task", "genre", "--features", "mfcc"), GENRE),
)
ENSEMBLE_MEMBERS = ("genre_cnn_mel", "genre_cnn_chroma", "genre_cnn_mfcc")
ENSEMBLE_PUBLISHED = "0.57 (report 3, FMA-small audio, majority vote)"
QUICK_FLAGS = ("--epochs", "1", "--batch-size", "16", "--max-frames", "256", "--cnn-channels", "4", "8", "8", "8",
               "--lstm-units", "8", "--ast-dim", "16", "--ast-depth", "1", "--ast-heads", "2")


def run_topic(topic: Topic, out: Path, data_dir: str | None, quick: bool) -> dict:
    """The topic's report (trained now, or read back when its run finished earlier)."""
    run_dir = out / topic.name
    report = run_dir / "report.json"
    if report.is_file():
        print(f"[reproduce] {topic.name}: finished earlier, kept", flush=True)
        return json.loads(report.read_text())
    flags = list(topic.flags) + (["--data-dir", data_dir] if data_dir else []) + (list(QUICK_FLAGS) if quick else [])
    if topic.name == "energy_transfer":
        flags += ["--init-from", str(out / "genre_cnn")]
    print(f"[reproduce] {topic.name}: python -m mgr_tf.train {' '.join(flags)}", flush=True)
    argv = [*flags, "--out", str(run_dir), "--export", "none", "--no-baseline"]
    return run(plan_from_args(parse_args(build_parser(), argv), argv))


def run_ensemble(out: Path) -> dict:
    """Report 3's ensembles (vote, mean, confidence) of the MEL / chroma / MFCC runs."""
    folder = out / "ensemble_mel_chroma_mfcc"
    path = folder / f"{ensemble.REPORT_NAME}.json"
    if not path.is_file():
        ensemble.run_ensemble([out / m for m in ENSEMBLE_MEMBERS], "all", folder)
    return json.loads(path.read_text())


def render_markdown(rows: list[dict], quick: bool, data_dir: str | None) -> str:
    """reproduce.md: one row per topic."""
    lines = ["# Reproduction of the research topics", "",
             f"Data: {data_dir or 'the embedded synthetic corpus'}." + (
                 " **--quick smoke run (1 epoch, tiny models): not results.**" if quick else ""),
             "Published numbers are on the real FMA-derived data (shared reference, section 2); on other data they are "
             "context, not targets.", "",
             "| topic | metric | this run | published | report |", "|---|---|---|---|---|"]
    for r in rows:
        value = f"{r['value']:.3f}" if r["value"] is not None else f"not run: {r['not_run']}"
        link = f"[{r['name']}]({r['report']})" if r["value"] is not None else "-"
        lines.append(f"| {r['title']} | {r['metric']} | {value} | {r['published'] or '-'} | {link} |")
    return "\n".join(lines) + "\n"


def reproduce(out: Path, data_dir: str | None = None, quick: bool = False) -> list[dict]:
    """Runs every topic and the ensemble (skipping finished ones); writes reproduce.md / .json."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for topic in TOPICS:
        output, metric = topic.metric
        row = {"name": topic.name, "title": topic.title, "metric": f"{output} {metric}", "value": None,
               "published": topic.published, "report": f"{topic.name}/report.md"}
        missing = missing_data(topic, data_dir)
        if missing or any(r["value"] is None for r in rows if r["name"] in topic.after):
            row["not_run"] = missing or f"needs {', '.join(topic.after)}"
            print(f"[reproduce] {topic.name}: not run ({row['not_run']})", flush=True)
        else:
            row["value"] = float(run_topic(topic, out, data_dir, quick)["metrics"][output][metric])
        rows.append(row)
    if any(r["value"] is None for r in rows if r["name"] in ENSEMBLE_MEMBERS):
        return _finish(out, rows, data_dir, quick)
    result = run_ensemble(out)
    for method, values in result["methods"].items():
        rows.append({"name": "ensemble_mel_chroma_mfcc", "title": f"genre, ensemble of mel/chroma/MFCC CNNs ({method})",
                     "metric": "genre accuracy", "value": float(values["accuracy"]),
                     "published": ENSEMBLE_PUBLISHED if method == "vote" else "",
                     "report": "ensemble_mel_chroma_mfcc/ensemble_report.md"})
    return _finish(out, rows, data_dir, quick)


def _finish(out: Path, rows: list[dict], data_dir: str | None, quick: bool) -> list[dict]:
    write_json(out / "reproduce.json", {"quick": quick, "data_dir": data_dir, "rows": rows})
    write_text(out / "reproduce.md", render_markdown(rows, quick, data_dir))
    return rows


def missing_data(topic: Topic, data_dir: str | None) -> str:
    """Why a topic cannot run on this root (its sub-dataset is absent), or "" when it can."""
    if data_dir is None:
        return ""

    task = topic.flags[topic.flags.index("--task") + 1]
    sub = sub_datasets(get_task(task).label_kind)["--beat" in topic.flags]
    return "" if (Path(data_dir) / sub).is_dir() else f"the root has no {sub}/"
