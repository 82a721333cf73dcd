"""Rows streamed to a CSV or JSON Lines file and resumed after a kill: `RowWriter`.

A row is a dict with a key column (e.g. ``input``, a file) and a count column (e.g. ``windows``): the rows of one
key are written together, in one write, and there are `count` of them when they come in groups (one row per
window) or one. A run killed in the middle of a write leaves at most a partial last line, or a last group with
fewer rows than its count; both are cut off when the file is opened again, and the keys in what remains are
`done`. `mgr_tf.serving.batch.columns` and `file_rows` make the rows of predictions.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from mgr_tf.core.cli import UserError

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


def output_format(path: str | Path) -> str:
    """"csv" or "jsonl", by the file's extension.

    Raises:
        UserError: another extension.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path}: --out must end in {' or '.join(FORMATS)} (the format is chosen by the extension)")
    return FORMATS[suffix]


def format_line(row: dict, names: Sequence[str], fmt: str) -> str:
    """One row as a line (with its newline) of `fmt`."""
    if fmt == "jsonl":
        return json.dumps({name: row[name] for name in names}) + "\n"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow([row[name] for name in names])
    return text.getvalue()


def header_line(names: Sequence[str], fmt: str) -> str | None:
    """The CSV header line (None for JSON Lines, which has none)."""
    return format_line(dict(zip(names, names)), names, "csv") if fmt == "csv" else None


def _parse(line: bytes, names: Sequence[str], fmt: str) -> dict:
    text = line.decode()
    if fmt == "jsonl":
        return json.loads(text)
    return dict(zip(names, next(csv.reader([text]))))


class RowWriter:
    """Appends rows to a CSV or JSON Lines file, resuming what a previous run wrote.

    Args:
        path: the output file (format by extension, `output_format`).
        names: its columns; an existing file must have the same ones.
        key: the column that names what a group of rows is about.
        count: the column holding how many rows the group has, when `grouped`.
        grouped: whether a key has `count` rows (else one).
    """

    def __init__(self, path: str | Path, names: Sequence[str], *, key: str = "input", count: str = "windows",
                 grouped: bool = False):
        self.path, self.names = Path(path), list(names)
        self.key, self.count, self.grouped = key, count, grouped
        self.format = output_format(path)
        self.done: set[str] = set()
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            self._resume()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a", newline="", encoding="utf-8")
        header = header_line(self.names, self.format)
        if self.path.stat().st_size == 0 and header:
            self._write(header)

    def _resume(self) -> None:
        """Reads the files already written and cuts off an unfinished end."""
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1  # a partial last line goes
        offset, lines = 0, []
        for line in data[:keep].splitlines(keepends=True):
            lines.append((offset, line))
            offset += len(line)
        if self.format == "csv" and lines:
            header = next(csv.reader([lines[0][1].decode()]))
            if header != self.names:
                raise UserError(f"{self.path}: its columns {header} are not these rows' {self.names} "
                                "(another model or --timeline setting wrote it): choose another --out")
            lines = lines[1:]
        groups: list[tuple[int, str, int, int]] = []  # (offset, key, rows, count)
        for offset, line in lines:
            try:
                row = _parse(line, self.names, self.format)
                if list(row) != self.names:
                    raise KeyError(self.key)
                name, count = row[self.key], int(row[self.count]) if self.grouped else 1
            except (ValueError, KeyError, StopIteration):
                raise UserError(f"{self.path}: the line at byte {offset} is not one of these rows "
                                "(another program wrote it): choose another --out") from None
            if groups and groups[-1][1] == name:
                groups[-1] = (groups[-1][0], name, groups[-1][2] + 1, count)
            else:
                groups.append((offset, name, 1, count))
        if groups and groups[-1][2] < groups[-1][3]:
            keep = groups.pop()[0]  # a group cut off between its rows
        self.done = {name for _, name, _, _ in groups}
        if keep < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)

    def _write(self, text: str) -> None:
        self.handle.write(text)
        self.handle.flush()

    def write(self, rows: Sequence[dict]) -> None:
        """Appends the rows of one key, in one write."""
        self._write("".join(format_line(row, self.names, self.format) for row in rows))
        if rows:
            self.done.add(rows[0][self.key])

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
