"""Generators run in worker processes, their items streamed back: `stream_map`.

Each item's generator runs in one worker; what it yields comes back as it is produced, through a bounded queue,
so a long item (an hour-long recording) streams in pieces with flat memory and a slow consumer holds the workers
back instead of piling their output up.

Workers are forked where the platform can (Linux), as ingest's decoding workers are: they start at once and share
the parent's imported modules, and they run only the generator (decoding: NumPy, soundfile, soxr), never the
parent's TensorFlow, whose threads do not exist in a forked child. Elsewhere they are spawned and import the
generator's module (which should import no TensorFlow; a script calling this needs the usual
``if __name__ == "__main__":`` guard).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

POLL_SECONDS = 0.05  # how long the consumer waits for a message before it is told the stream is idle


@dataclass(frozen=True)
class Done:
    """An item's generator finished."""


@dataclass(frozen=True)
class Failed:
    """An item's generator raised (or its worker died); the reason, in one line.

    Args:
        reason: the exception's message (or what happened to the worker).
    """

    reason: str


DONE = Done()
IDLE = object()  # yielded (index None) when no message came for POLL_SECONDS: a consumer may flush buffered work
_STARTED = "started"
# Exceptions an item's generator raises that are about its input, reported by their message alone.
INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def stream_map(fn: Callable[..., Iterable], items: Sequence, *, args: tuple = (), workers: int = 1,
               max_pending: int = 32) -> Iterator[tuple[int | None, Any]]:
    """Runs the generator `fn(item, *args)` for every item and yields `(index, message)` as messages come.

    For each item: every value its generator yields, in order, then `DONE`, or `Failed(reason)` if it raised
    (after the values it yielded before). Messages of different items interleave. With more than one worker,
    `(None, IDLE)` is yielded whenever no message came for `POLL_SECONDS`.

    Args:
        fn: a generator function defined at module level (workers import it by name).
        items: the items (picklable).
        args: more arguments of `fn` (picklable).
        workers: worker processes; 1 runs everything in this process, in order.
        max_pending: messages produced but not yet consumed, at most (the bounded queue).
    """
    if workers <= 1 or len(items) <= 1:
        for index, item in enumerate(items):
            yield from _run_one(index, fn, item, args)
        return
    yield from _stream_in_workers(fn, items, args, min(workers, len(items)), max_pending)


def _run_one(index: int, fn, item, args) -> Iterator[tuple[int, Any]]:
    try:
        for message in fn(item, *args):
            yield index, message
    except INPUT_ERRORS as exc:
        yield index, Failed(str(exc))
    except Exception as exc:  # a reader failing in an unforeseen way fails its item, not the run
        yield index, Failed(f"{type(exc).__name__}: {exc}")
    else:
        yield index, DONE


def _work(worker: int, fn, args, tasks, results) -> None:
    """A worker's loop: takes item indices until a None, streams each item's messages into `results`."""
    while True:
        task = tasks.get()
        if task is None:
            return
        index, item = task
        results.put((worker, index, _STARTED))
        for _, message in _run_one(index, fn, item, args):
            results.put((worker, index, message))


def _stream_in_workers(fn, items, args, workers: int, max_pending: int) -> Iterator[tuple[int | None, Any]]:
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    tasks, results = context.Queue(), context.Queue(max_pending)
    for index, item in enumerate(items):
        tasks.put((index, item))
    for _ in range(workers):
        tasks.put(None)

    def start(worker: int):
        process = context.Process(target=_work, args=(worker, fn, args, tasks, results), daemon=True,
                                  name=f"mgr_tf-worker-{worker}")
        process.start()
        return process

    processes = [start(w) for w in range(workers)]
    working: dict[int, int | None] = dict.fromkeys(range(workers))
    unfinished = set(range(len(items)))
    try:
        while unfinished:
            try:
                worker, index, message = results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                yield None, IDLE
                for worker, process in enumerate(processes):
                    if process.is_alive() or process.exitcode == 0:
                        continue
                    lost, working[worker] = working[worker], None
                    processes[worker] = start(worker)  # a replacement takes the next items
                    if lost is not None:
                        unfinished.discard(lost)
                        yield lost, Failed(f"the decoding worker died (exit code {process.exitcode})")
                if not any(process.is_alive() for process in processes) and results.empty():
                    # Every worker has stopped: an item taken by a worker that died before it said so is lost.
                    for lost in sorted(unfinished):
                        yield lost, Failed("the decoding worker died")
                    return
                continue
            if message == _STARTED:
                working[worker] = index
                continue
            if isinstance(message, (Done, Failed)):
                working[worker] = None
                unfinished.discard(index)
            yield index, message
    finally:
        stopping = not unfinished  # all done: the workers are leaving (they read their None)
        for process in processes:
            if process.is_alive() and not stopping:
                process.terminate()  # the consumer stopped early (an error, a kill)
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for channel in (results, tasks):
            channel.close()
            channel.cancel_join_thread()

