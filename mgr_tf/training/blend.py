"""The blend of a from-scratch genre model with a linear model on clip statistics trained beside it (`--blend auto`).

On tens or hundreds of clips a CNN trained from scratch and a linear model on per-band clip statistics make
different mistakes: averaging their probabilities beats both where either alone ties or loses (docs/results.md,
Emotify and the embedded corpus). The partner is the wide statistics model (`mgr_tf.training.baseline.wide_plan`:
every statistic of the summary family, a superset of the baseline's mean and std, the same convex head); the
baseline itself stays the run's yardstick. `blend_run` runs after both (`mgr_tf.training.runner.finish`):

1. both models' probabilities on the validation clips; the partner's head is solved again on the training clips
   alone for this (its served head also saw the validation clips, which would bias the choice towards it);
2. the model's weight w is the value of `GRID` with the lowest validation log-loss of w * model + (1 - w) *
   partner (ties: the smaller w). w = 0 serves the statistics model alone, w = 1 the model alone: the choice is
   a one-parameter fit on clips neither model was fitted on;
3. the blend is scored on the run's evaluation split, like every model: its metrics become the run's, the model
   alone is kept in the report under "model_alone" (its rows in `predictions_model.csv`), the partner alone
   under "wide_alone";
4. `blend.json` in the run folder records the weight and the validation losses; the export
   (`mgr_tf.serving.export.export_run`) then serves `mgr_tf.models.blend.blend_model`, which takes the fused arrays.
"""

from __future__ import annotations

import numpy as np

from mgr_tf.core.io import write_json
from mgr_tf.data import make_dataset, split_ids
from mgr_tf.models import get_backbone
from mgr_tf.models.blend import BLEND_FILE
from mgr_tf.models.build import load_keras_model
from mgr_tf.training import report as R
from mgr_tf.training.fit import targets_and_predictions
from mgr_tf.training.frozen import adapt_norm, features_of, fit_convex_heads, split_at
from mgr_tf.training.plan import Plan

MODEL_PREDICTIONS = "predictions_model.csv"
TRAIN_ONLY_MODEL = "model_train_only.keras"  # with --refit: the model before it, trained on the training clips
GRID = tuple(round(k / 20, 2) for k in range(21))  # the model's weight: 0, 0.05, ..., 1


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true classes (probabilities clipped at 1e-12)."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def choose_weight(p_model: np.ndarray, p_partner: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """(the model's weight of lowest log-loss on `GRID`, the log-loss at every grid point); ties: the smaller."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    losses = [log_loss(w * p_model + (1 - w) * p_partner, labels) for w in GRID]
    return GRID[int(np.argmin(losses))], losses


def probabilities(model, spec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, genre probabilities) of every clip of a split, in `split_ids` order, as the run scores them."""
    truth, predicted = targets_and_predictions(model, make_dataset(spec, split))
    y, p = truth["genre"].reshape(-1).astype(int), np.asarray(predicted["genre"], np.float64)
    if len(y) != len(split_ids(spec, split)):
        raise ValueError(f"blend: {split} gave {len(y)} rows for {len(split_ids(spec, split))} clips")
    return y, p


def partner_validation_probabilities(partner_plan: Plan, partner_report: dict) -> np.ndarray:
    """A statistics model's validation probabilities from a head fitted on the training clips only.

    A convex head (the default) was solved on train + validation: it is solved again on train alone, on the
    cached statistics. A head trained by gradient saw the validation clips only for early stopping: used as is.
    """
    spec = partner_plan.spec
    model = load_keras_model(partner_plan.run_dir)
    if (partner_report.get("head_fit") or {}).get("method") == "convex":
        layer = get_backbone(partner_plan.model.family).frozen_layer
        frozen, rest = split_at(model, layer)
        train = features_of(frozen, spec, "train")
        val = features_of(frozen, spec, "validation")
        adapt_norm(rest, train.x)
        fit_convex_heads(model, layer, spec.task, train, partner_plan.regression, partner_report["head_fit"]["c"])
        return np.asarray(rest.predict(val.x, batch_size=256, verbose=0)["genre"], np.float64)
    return probabilities(model, spec, "validation")[1]


def blend_run(plan: Plan, report: dict, partner_plan: Plan, partner_report: dict) -> dict:
    """Chooses the blend weight, scores the blend and returns the run's report with the blend's metrics.

    `partner_plan` and `partner_report` are the statistics partner's (`wide_plan`), trained and scored on the
    same split.

    Writes `blend.json`, the blend's `predictions.csv` and confusion matrix; the model alone's rows move to
    `predictions_model.csv`.
    """
    spec, task, run_dir = plan.spec, plan.spec.task, plan.run_dir
    class_names = report["class_names"]
    model = load_keras_model(run_dir)
    partner = load_keras_model(partner_plan.run_dir)
    # The weight is chosen with models that did not train on the validation clips (with --refit, the served one did).
    first = load_keras_model(run_dir / TRAIN_ONLY_MODEL) if (run_dir / TRAIN_ONLY_MODEL).is_file() else model
    y_val, p_model_val = probabilities(first, spec, "validation")
    p_partner_val = partner_validation_probabilities(partner_plan, partner_report)
    weight, losses = choose_weight(p_model_val, p_partner_val, y_val)

    split = report["eval_split"]
    y, p_model = probabilities(model, spec, split)
    y_partner, p_partner = probabilities(partner, partner_plan.spec, split)
    if not np.array_equal(y, y_partner):
        raise ValueError("blend: the model and its partner read the evaluation clips in different orders")
    mixed = weight * p_model + (1 - weight) * p_partner
    ids = split_ids(spec, split)
    if (run_dir / R.PREDICTIONS).is_file():
        (run_dir / R.PREDICTIONS).replace(run_dir / MODEL_PREDICTIONS)
    R.write_predictions(run_dir / R.PREDICTIONS, task, ids, {"genre": y}, {"genre": mixed}, class_names)
    metrics = R.evaluate(task, {"genre": y}, {"genre": mixed}, class_names=class_names, run_dir=run_dir,
                         title=f"blend, model weight {weight:g} ({split})")
    stats = ", ".join(partner_plan.model.backbone.summary_stats)
    blend = {"weight_model": weight, "weight_partner": round(1 - weight, 2), "chosen_on": "validation",
             "partner": f"linear head on per-band statistics ({stats})",
             "validation_clips": int(len(y_val)), "criterion": "log-loss",
             "validation_log_loss": {"model": losses[-1], "partner": losses[0], "blend": min(losses)},
             "grid": list(GRID), "grid_log_loss": losses, "partner_run": str(partner_plan.run_dir.relative_to(run_dir)),
             "features": plan.data.features,
             "scored_on_choice_clips": split == "validation"}
    write_json(run_dir / BLEND_FILE, blend)
    print(f"[train] blend: model weight {weight:g} (validation log-loss {min(losses):.3f}; model alone "
          f"{losses[-1]:.3f}, statistics alone {losses[0]:.3f}); {split} accuracy {metrics['genre']['accuracy']:.3f} "
          f"(model alone {report['headline']['accuracy']:.3f}, statistics alone "
          f"{partner_report['headline']['accuracy']:.3f})", flush=True)
    alone = {key: report[key] for key in ("metrics", "headline")}
    return {**report, "metrics": metrics, "headline": R.headline(task, metrics), "model_alone": alone,
            "wide_alone": {key: partner_report[key] for key in ("metrics", "headline", "train_seconds")}, "blend": blend}
