"""`python -m mgr_tf.train`: flags -> a checked `Plan` -> `mgr_tf.training.runner.run` (model, baseline, export)."""

from __future__ import annotations

import sys
from typing import Sequence

from mgr_tf.core.cli import quiet_tensorflow, run_cli
from mgr_tf.training.flags import build_parser, parse_args, plan_from_args
from mgr_tf.training.plan import check


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    plan = check(plan_from_args(parse_args(build_parser(), argv), argv))
    from mgr_tf.training import report as R  # TensorFlow on demand: the flags are checked first
    from mgr_tf.training.runner import run  # TensorFlow on demand

    report = run(plan)
    print(f"\n[train] report: {plan.run_dir / 'report.md'}")
    task = plan.spec.task
    line = f"[train] {report['eval_split']}: {R.summary_line(task, report['metrics'])}"
    if report.get("baseline"):
        line += f" | summary baseline on the same split: {R.summary_line(task, report['baseline']['metrics'])}"
    print(line)
    if report.get("export_dir"):
        print(f"[train] exported SavedModel: {report['export_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
