"""Counts the outcomes a reliability run recorded (`MGR_TF_OUTCOMES=FILE pytest tests/reliability`) in the form of
issue 19's table: `python tests/reliability/table.py FILE`."""

from __future__ import annotations

import json
import sys
from collections import Counter

ROWS = {"clear": "clear one-line error naming the file", "unclear": "unclear error (no file named, or misleading)",
        "traceback": "traceback", "silent": "silent wrong result", "lost": "data lost or corrupted",
        "security": "security (reads outside the data root, decompression bomb)", "ok": "right result (no refusal due)"}


def main(path: str) -> None:
    records = json.loads(open(path).read())
    for scope, keep in (("the issue's cases 1-10", lambda r: r["case"] != "own"), ("own cases", lambda r: r["case"] == "own")):
        counts = Counter(r["kind"] for r in records if keep(r))
        print(f"\n{scope}\n\n| outcome | cases |\n|---|---|")
        for kind, label in ROWS.items():
            print(f"| {label} | {counts.get(kind, 0)} |")


if __name__ == "__main__":
    main(sys.argv[1])
