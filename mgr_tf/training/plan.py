"""A training run, decided before any work: its configs, folder and export, checked in one place.

`Plan` gathers what one run needs (data, model, training and regression configs, the run folder, the export
name) and `check` is the resolve step above the configs: the task, feature type and family exist, and the
combination of flags can work. It imports no TensorFlow, so a command line refuses a bad combination at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DataConfig, ModelConfig, RegressionConfig, TrainConfig
from mgr_tf.core.paths import DEFAULT_EXPORT_ROOT, check_export_name
from mgr_tf.data.spec import DataSpec, resolve
from mgr_tf.models import get_backbone, resolved
from mgr_tf.training import cluster


@dataclass(frozen=True)
class Plan:
    """One training run.

    Args:
        data: what to train on.
        model: the architecture.
        train: how to train.
        regression: the loss settings of regression targets (ignored by classification tasks).
        run_dir: the run folder (created; an interrupted run in it is resumed).
        export_name: export the model under this name (None = no export).
        export_root: export root folder.
        command: the command line, recorded in the report.
        baseline: also train the summary-statistics baseline on the same split and report its score.
        model_reason: why this family, when `--model auto` chose it (recorded in config.json and the report).
    """

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    regression: RegressionConfig = RegressionConfig()
    run_dir: Path = Path("runs/run")
    export_name: str | None = None
    export_root: str = DEFAULT_EXPORT_ROOT
    command: str = ""
    baseline: bool = False
    model_reason: str = ""

    @property
    def spec(self) -> DataSpec:
        """The data config resolved against the registries."""
        return resolve(self.data)


def default_run_name(data: DataConfig, family: str) -> str:
    """A deterministic run name, so rerunning the same command resumes the same run."""
    return f"{data.task}_{family}_{data.features}" + ("_beat" if data.beat else "")


def blends(plan: Plan) -> bool:
    """Whether the run serves its model blended with the wide statistics model (`--blend auto`,
    `mgr_tf.training.blend`): a genre model trained from scratch on a feature type the fused arrays give, with
    the baseline trained beside it."""
    train, spec = plan.train, plan.spec
    backbone = get_backbone(plan.model.family)
    return (plan.baseline and train.blend == "auto" and not train.overfit_batch and spec.task.classification
            and backbone.frozen_layer is None and not spec.feature.stored and plan.data.val_fraction > 0)


def check(plan: Plan) -> Plan:
    """The plan with its model options filled in, or one clear line (UserError) for what cannot work.

    Raises:
        UserError: an unknown task, feature type or family, or flags that do not combine.
    """
    try:
        spec = plan.spec
        model = resolved(plan.model)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    task, train, regression, data = spec.task, plan.train, plan.regression, plan.data
    backbone = get_backbone(model.family)
    problem = None
    if regression.learned_weights and len(task.outputs) < 2:
        problem = (f"--learned-weights needs --task multitask (several outputs to weigh); --task {task.name} has "
                   f"{len(task.outputs)}")
    elif train.init_from and task.transfer_source:
        problem = (f"--init-from transfers a {task.name} model to another task; it cannot be used with "
                   f"--task {task.name}")
    elif data.mixup and regression.learned_weights:
        problem = ("--mixup does not combine with --learned-weights (the learned weighting ignores the sample "
                   "weights that carry the mixing weight)")
    elif train.refit and (backbone.frozen_layer is not None or train.init_from or train.overfit_batch
                          or train.distribute in ("mirrored", "multiworker")):
        problem = ("--refit retrains a model trained from scratch in one process: not with --init-from, "
                   "--overfit-batch, --distribute, or heads on fixed features (those are fitted on train + "
                   "validation already)")
    elif train.distribute in ("mirrored", "multiworker") and train.overfit_batch:
        problem = f"--overfit-batch trains in one process: it does not combine with --distribute {train.distribute}"
    elif train.distribute in ("mirrored", "multiworker") and backbone.encoder is not None and not train.init_from:
        problem = (f"--distribute {train.distribute} does not train --model {model.family}: its heads train on frozen "
                   "encoder features, in one process (see docs/distributed.md)")
    else:
        problem = backbone.check_data(data.features, data.patch_frames) or cluster.problem(train.distribute)
    if not problem and plan.export_name is not None:
        try:
            check_export_name(plan.export_name)
        except ValueError as exc:
            problem = f"--export: {exc}"
        root = Path(plan.export_root)
        if not problem and root.exists() and not root.is_dir():
            problem = f"--export-root {root}: a file, not a folder (exports are folders under it)"
    if problem:
        raise UserError(problem)
    plan = dataclasses.replace(plan, model=model)
    if train.monitor == "auto":  # the loss where probabilities are blended (calibration is what counts there)
        plan = dataclasses.replace(plan, train=dataclasses.replace(train, monitor="loss" if blends(plan) else "metric"))
    return plan
