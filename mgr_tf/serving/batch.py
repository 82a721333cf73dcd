"""Predictions over many files with one loaded model: `predict_inputs`.

Audio is decoded in worker processes (`mgr_tf.core.parallel.stream_map` running `mgr_tf.data.inputs.read_input`:
decoding in blocks, cutting windows, the too-short and silence rules), a window at a time, so an hour-long file
streams through with flat memory. The main process turns each window into the model's examples (`model.examples`),
collects examples of the same signature and shape from many files into batches of `model.batch_size`, runs them
(`model.run`), folds each window's examples back into one output (`model.combine`) and yields one `FileResult` per
file, in input order. A bad file gives a result with its problem and stops nothing.

What a model must offer (`Predictor` for exports, `TagPredictor` for taggers): `reading` (a `Reading`),
`batch_size`, `prefetch` (pieces decoded ahead, at most), `workers` (the decoding processes it takes by default),
`examples(piece, path) -> (signature, (k, ...) array)`, `run(signature, batch) -> {name: (B, ...)}`,
`combine({name: (k, ...)}) -> {name: array}`, and for rows `score_columns()` and `scores(window outputs)`. Each
example's output does not depend on what it is batched with (checked in tests/test_predict.py), so the numbers are
those of one file at a time.

Rows (`columns`, `file_rows`, written by `mgr_tf.core.rows.RowWriter`): ``input`` (the file as listed), with
`--timeline` ``window``, ``start`` and ``end`` (seconds), then ``windows`` (the file's window count) and the
model's scores (``genre`` and one probability per class; or one value per emotion; or one probability per tag).
Numbers are written with 9 significant digits, which give back the model's float32 values exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from mgr_tf.core.cli import UserError
from mgr_tf.core.parallel import IDLE, Done, Failed, stream_map
from mgr_tf.data.inputs import Piece, read_input


@dataclass
class Window:
    """One window's prediction.

    Args:
        start: where the window starts, in seconds.
        end: where it ends, in seconds.
        outputs: the model's outputs for the window ({name: array}).
    """

    start: float
    end: float
    outputs: dict


@dataclass
class FileResult:
    """The predictions of one input file (or why it has none).

    Args:
        input: the file, as listed.
        windows: its windows' predictions, in order.
        problem: one line saying why the file was refused (None when it was predicted).
    """

    input: str
    windows: list[Window] = field(default_factory=list)
    problem: str | None = None

    @property
    def outputs(self) -> list[dict]:
        """The outputs of each window."""
        return [w.outputs for w in self.windows]


class _File:
    """A file being predicted: its windows' spans and outputs so far, whether its reader has finished."""

    def __init__(self, path: str):
        self.result = FileResult(path)
        self.spans: dict[int, tuple[float, float]] = {}
        self.outputs: dict[int, dict] = {}
        self.read = False

    @property
    def complete(self) -> bool:
        return self.result.problem is not None or (self.read and len(self.outputs) == len(self.spans))

    def finish(self) -> FileResult:
        if self.result.problem is None:
            self.result.windows = [Window(*self.spans[n], self.outputs[n]) for n in sorted(self.spans)]
        return self.result


class _Pending:
    """A window whose examples are queued: its outputs, row by row, until all `count` rows are in."""

    def __init__(self, count: int):
        self.count, self.missing = count, count
        self.outputs: dict[str, np.ndarray] | None = None

    def fill(self, row: int, outputs: dict, position: int) -> bool:
        """Stores row `row` of the window from row `position` of a batch's outputs; True when it was the last."""
        if self.outputs is None:
            self.outputs = {name: np.empty((self.count,) + value.shape[1:], value.dtype)
                            for name, value in outputs.items()}
        for name, value in outputs.items():
            self.outputs[name][row] = value[position]
        self.missing -= 1
        return self.missing == 0


Finished = list[tuple[tuple[int, int], dict]]  # ((file index, window number), the window's output)


class _Batches:
    """Examples waiting for the model, grouped by (signature, example shape), and the windows they belong to."""

    def __init__(self, model, batch_size: int):
        self.model, self.batch_size = model, batch_size
        self.groups: OrderedDict[tuple, list] = OrderedDict()
        self.waiting = 0
        self.pending: dict[tuple[int, int], _Pending] = {}

    def add(self, key: tuple[int, int], signature: str, examples: np.ndarray) -> Finished:
        """Queues a window's examples; returns the windows finished by the batches this made full."""
        self.pending[key] = _Pending(len(examples))
        group_key = (signature, examples.shape[1:])
        group = self.groups.setdefault(group_key, [])
        group.extend((key, row, example) for row, example in enumerate(examples))
        self.waiting += len(examples)
        done = []
        while len(self.groups.get(group_key, ())) >= self.batch_size:
            done += self._run(group_key)
        # Many partial groups (tails of different lengths): run the oldest, so memory stays bounded.
        while self.waiting >= 2 * self.batch_size:
            done += self._run(next(iter(self.groups)))
        return done

    def run_largest(self) -> Finished:
        """Runs the fullest group (called when the decoders are slower than the model)."""
        if not self.groups:
            return []
        return self._run(max(self.groups, key=lambda g: len(self.groups[g])))

    def run_all(self) -> Finished:
        done = []
        while self.groups:
            done += self._run(next(iter(self.groups)))
        return done

    def drop(self, file: int) -> None:
        """Forgets the queued examples of a refused file."""
        for group_key in list(self.groups):
            kept = [entry for entry in self.groups[group_key] if entry[0][0] != file]
            self.waiting -= len(self.groups[group_key]) - len(kept)
            if kept:
                self.groups[group_key] = kept
            else:
                del self.groups[group_key]
        for key in [k for k in self.pending if k[0] == file]:
            del self.pending[key]

    def _run(self, group_key: tuple) -> Finished:
        group = self.groups.pop(group_key)
        batch, rest = group[:self.batch_size], group[self.batch_size:]
        if rest:
            self.groups[group_key] = rest
            self.groups.move_to_end(group_key, last=False)  # keeps its age
        self.waiting -= len(batch)
        outputs = self.model.run(group_key[0], np.stack([example for _, _, example in batch]))
        done = []
        for position, (key, row, _) in enumerate(batch):
            window = self.pending.get(key)
            if window is not None and window.fill(row, outputs, position):
                del self.pending[key]
                done.append((key, self.model.combine(window.outputs)))
        return done


TIMELINE_COLUMNS = ("window", "start", "end")


def columns(model, timeline: bool) -> list[str]:
    """The columns of `model`'s rows (one per file, or with `timeline` one per window)."""
    names = ["input", *(TIMELINE_COLUMNS if timeline else ()), "windows", *model.score_columns()]
    if len(set(names)) != len(names):
        raise UserError(f"the model's score names {model.score_columns()} repeat a column name of {names}")
    return names


def _number(value):
    return float(f"{value:.9g}") if isinstance(value, float) else value


def file_rows(result: FileResult, model, timeline: bool) -> list[dict]:
    """The rows of a predicted file: one (scores averaged over its windows), or one per window."""
    count = len(result.windows)
    if not timeline:
        return [{"input": result.input, "windows": count,
                 **{k: _number(v) for k, v in model.scores(result.outputs).items()}}]
    return [{"input": result.input, "window": number, "start": round(window.start, 3), "end": round(window.end, 3),
             "windows": count, **{k: _number(v) for k, v in model.scores([window.outputs]).items()}}
            for number, window in enumerate(result.windows)]


def predict_inputs(model, paths: Sequence[str], *, workers: int = 0) -> Iterator[FileResult]:
    """One `FileResult` per path, in order, from `model`'s windows batched across files.

    Args:
        model: a `Predictor` or `TagPredictor` (see the module docstring).
        paths: the input files (`mgr_tf.data.inputs.list_inputs`).
        workers: decoding processes; 0 = the model's default (`model.workers`), 1 = decode in this process.
    """
    workers = workers or model.workers
    files = {index: _File(path) for index, path in enumerate(paths)}
    batches = _Batches(model, model.batch_size)
    next_out = 0

    def finished(windows) -> None:
        for (index, number), output in windows:
            files[index].outputs[number] = output

    stream = stream_map(read_input, list(paths), args=(model.reading,), workers=workers,
                        max_pending=model.prefetch)
    for index, message in stream:
        if message is IDLE:
            finished(batches.run_largest())
        elif index not in files or files[index].result.problem is not None:
            continue  # the rest of a refused file
        elif isinstance(message, Piece):
            file = files[index]
            try:
                signature, examples = model.examples(message, file.result.input)
            except (ValueError, UserError) as exc:  # the file's data does not fit the model
                file.result.problem = str(exc)
                batches.drop(index)
                continue
            file.spans[message.number] = (message.start, message.end)
            finished(batches.add((index, message.number), signature, examples))
        elif isinstance(message, Failed):
            files[index].result.problem = message.reason
            batches.drop(index)
        elif isinstance(message, Done):
            files[index].read = True
        while next_out in files and files[next_out].complete:
            yield files.pop(next_out).finish()
            next_out += 1
    finished(batches.run_all())
    while next_out in files:
        yield files.pop(next_out).finish()
        next_out += 1
