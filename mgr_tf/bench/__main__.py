"""Prints the benchmark table; see `python -m mgr_tf.bench --help`."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from typing import Sequence

from mgr_tf.bench import BENCHMARKS, ON_REQUEST
from mgr_tf.core.cli import ArgumentParser, quiet_tensorflow, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()

    parser = ArgumentParser(
        prog="python -m mgr_tf.bench",
        description="Run mgr_tf's benchmarks and print one table. Each target is a ratio measured "
                    "side by side in the same run, so numbers from a noisy shared machine stay comparable.")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None,
                        help=f"run only these benchmarks (default: all but {', '.join(sorted(ON_REQUEST))}, which "
                             "need real data and take long)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and fewer repeats (a smoke run, not for reporting)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    args = parser.parse_args(argv)

    rows = []
    for name in args.only or [b for b in BENCHMARKS if b not in ON_REQUEST]:
        module = importlib.import_module(BENCHMARKS[name])
        print(f"[bench] running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(quick=args.quick))
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([dataclasses.asdict(r) for r in rows], fh, indent=2)
    return 0


def format_table(rows) -> str:
    """Rows as a Markdown table."""
    lines = ["| bench | case | value | unit | ratio | vs | target |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"| {r.bench} | {r.case} | {r.value:.4g} | {r.unit} | {ratio} | {r.baseline} | {r.target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_cli(main))
