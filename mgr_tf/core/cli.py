"""Shared plumbing of the command-line entry points.

Every CLI has `main(argv=None)`: it parses flags into config dataclasses and calls plain
functions. Errors the user can fix are raised as `UserError` (or `FileNotFoundError` /
`ValueError` from the library) and printed as one line, never as a bare traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.abc
import logging
import os
import re
import sys
import threading
import time
import typing
from typing import Any, Callable, Iterator, Sequence, TextIO


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (the problem, then "see --help") instead of the usage block.

    Every command gets `--verbose`, which shows TensorFlow's C++ notices that `quiet_tensorflow` hides; it acts
    while the flags are parsed, before any command imports TensorFlow.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action=_ShowNotices,
                          help="show TensorFlow's C++ start-up notices and log lines (hidden by default)")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _ShowNotices(argparse.Action):
    """`--verbose`: undoes `quiet_tensorflow` as soon as the flag is read."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        show_tensorflow_notices()


# ----------------------------------------------------------------------------------------------
# TensorFlow's C++ notices.

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# What TensorFlow's C++ side prints while it loads, before any Python hook runs (absl's logging is not yet
# initialised, so TF_CPP_MIN_LOG_LEVEL does not reach these): absl's notice, and INFO / WARNING lines in absl's
# format, whose seconds count from the epoch ("I0000 00:00:1796158212.706544   30423 port.cc:153] oneDNN ...").
# Error and fatal lines (E..., F...) and everything else pass.
NOTICE_LINE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                         rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] )")


class _Quiet:
    """What `quiet_tensorflow` changed, so that `show_tensorflow_notices` can undo it."""

    set_log_level = False
    finder: "_FilterTensorFlowImport | None" = None
    retracing: "logging.Filter | None" = None


class _DropRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warnings (Python logger "tensorflow").

    Keras builds a new predict function for every model it is asked to predict with; a run that scores
    several models (the model, the baseline, the blend's choice) on small splits trips TensorFlow's counter
    of retraces per call site, which then warns about "excessive retracing" although nothing retraces
    needlessly. Every other record of the logger passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_tensorflow() -> None:
    """Silences TensorFlow's C++ notices in this process (call it before TensorFlow is imported).

    Two parts: TF_CPP_MIN_LOG_LEVEL=3 (unless the user set it) hides the log lines of C++ code that runs after
    TensorFlow has loaded, including a harmless error line that TF 2.21's tf.data prints on every epoch
    ("NodeDef mentions attribute use_unbounded_threadpool") and "failed call to cuInit" on machines without a
    GPU; real failures still raise in Python. The lines printed while TensorFlow's libraries load (absl's
    "All log messages before absl::InitializeLog()" notice, the oneDNN and CUDA-driver INFO lines) ignore that
    variable: an import hook filters them out of stderr while `import tensorflow` runs (`filtered_stderr`),
    passing every other line. A filter on the Python logger "tensorflow" drops its retracing warnings
    (`_DropRetracing`). `--verbose` (`show_tensorflow_notices`) or TF_CPP_MIN_LOG_LEVEL=0 shows everything.
    """
    if "tensorflow" in sys.modules:
        return
    if LOG_LEVEL_VARIABLE not in os.environ:
        os.environ[LOG_LEVEL_VARIABLE] = "3"
        _Quiet.set_log_level = True
    if os.environ[LOG_LEVEL_VARIABLE] != "0" and _Quiet.finder is None:
        _Quiet.finder = _FilterTensorFlowImport()
        sys.meta_path.insert(0, _Quiet.finder)
    if os.environ[LOG_LEVEL_VARIABLE] != "0" and _Quiet.retracing is None:
        _Quiet.retracing = _DropRetracing()
        logging.getLogger("tensorflow").addFilter(_Quiet.retracing)


def show_tensorflow_notices() -> None:
    """Undoes `quiet_tensorflow`: TensorFlow's own log level and nothing filtered."""
    if _Quiet.set_log_level:
        os.environ.pop(LOG_LEVEL_VARIABLE, None)
        _Quiet.set_log_level = False
    if _Quiet.finder is not None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(_Quiet.finder)
        _Quiet.finder = None
    if _Quiet.retracing is not None:
        logging.getLogger("tensorflow").removeFilter(_Quiet.retracing)
        _Quiet.retracing = None


@contextlib.contextmanager
def filtered_stderr(drop: re.Pattern = NOTICE_LINE) -> Iterator[None]:
    """Drops the lines matching `drop` from everything written to file descriptor 2 inside the block.

    Works below Python (C and C++ code writing to stderr): fd 2 is pointed at a pipe whose lines a thread
    copies to the real stderr as they come, so an error printed inside the block still shows at once.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not drop.match(line):
                    os.write(saved, line)

    thread = threading.Thread(target=copy, name="filtered_stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to the end and stops
        thread.join(timeout=10)
        os.close(saved)


class _FilterTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do, and runs its import inside `filtered_stderr`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        spec = next((s for s in (f.find_spec(fullname, path, target) for f in sys.meta_path
                                 if f is not self and hasattr(f, "find_spec")) if s is not None), None)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    """Wraps a module's loader so that executing the module runs inside `filtered_stderr`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # the module keeps its real loader
        try:
            with filtered_stderr():
                self.loader.exec_module(module)
        finally:
            with contextlib.suppress(ValueError):  # imported once: the hook has done its work
                sys.meta_path.remove(_Quiet.finder)

    def __getattr__(self, name):
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Runs `main`, turning user-facing errors into one line on stderr and a non-zero status."""
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
                       skip: Sequence[str] = (), help_texts: dict[str, str] | None = None,
                       choices: dict[str, Sequence] | None = None) -> None:
    """Adds one flag per field of dataclass `cls` (`--prefix-field-name`).

    Help texts come from the `Args:` section of the dataclass docstring unless given; a field whose
    metadata has "choices" gets a flag that accepts only those values.

    Args:
        parser: the parser (or argument group) to extend.
        cls: a dataclass type.
        prefix: flag prefix, e.g. "model" gives --model-dropout.
        skip: field names not to expose.
        help_texts: overrides of the help text per field.
        choices: the allowed values of fields (e.g. the names of a registry), besides those of their metadata.
    """
    docs = _arg_docs(cls)
    help_texts = help_texts or {}
    choices_of = {k: list(v) for k, v in (choices or {}).items()}
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + (f"{prefix}-" if prefix else "") + field.name.replace("_", "-")
        dest = (f"{prefix}_" if prefix else "") + field.name
        ftype = _field_type(cls, field)
        text = help_texts.get(field.name, docs.get(field.name, ""))
        default = field.default
        help_ = f"{text} (default: {default})" if text else f"(default: {default})"
        origin = typing.get_origin(ftype)
        args = [a for a in typing.get_args(ftype) if a is not type(None)]
        base = args[0] if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else ftype
        # A field may name its allowed values: field(..., metadata={"choices": (...)}).
        choices = (choices_of or {}).get(field.name, field.metadata.get("choices"))
        if base is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                                default=default, help=help_)
        elif typing.get_origin(base) is tuple:
            inner = typing.get_args(base)[0]
            parser.add_argument(flag, dest=dest, type=inner, nargs="+", default=default, choices=choices,
                                help=help_)
        else:
            parser.add_argument(flag, dest=dest, type=base, default=default, choices=choices, help=help_)


def dataclass_from_args(cls: type, args: argparse.Namespace, *, prefix: str = "", **overrides: Any) -> Any:
    """Builds dataclass `cls` from the flags that `add_dataclass_args` added."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        dest = (f"{prefix}_" if prefix else "") + field.name
        if hasattr(args, dest):
            value = getattr(args, dest)
            if isinstance(value, list):
                value = tuple(value)
            kwargs[field.name] = value
    kwargs.update(overrides)
    return cls(**kwargs)


def _arg_docs(cls: type) -> dict[str, str]:
    """Parses the Google-style `Args:` section of a class docstring into {name: text}."""
    doc = cls.__doc__ or ""
    out: dict[str, str] = {}
    in_args = False
    current = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args = True
            continue
        if not in_args:
            continue
        if not stripped:
            current = None
            continue
        head, sep, rest = stripped.partition(":")
        if sep and head.isidentifier() and " " not in head:
            current = head
            out[current] = rest.strip()
        elif current:
            out[current] += " " + stripped
    return out


def flags_from_dataclass(config: Any, defaults: Any = None, *, prefix: str = "", skip: Sequence[str] = (),
                         rename: dict[str, str] | None = None) -> list[str]:
    """The flags that `add_dataclass_args` parses back into `config`: its inverse, for reproducible commands.

    Only fields that differ from `defaults` are written: bools as --x / --no-x, tuples as the flag followed
    by their items, floats with `repr` (which round-trips exactly), other values with `str`. None is skipped
    (no flag sets a field to None).

    Args:
        config: a dataclass instance.
        defaults: the instance to compare with; None = the field defaults of its class (a field without a
            default is always written).
        prefix: flag prefix, as given to `add_dataclass_args`.
        skip: field names not to write.
        rename: field name -> flag stem, where the parser names a flag itself (e.g. {"learning_rate": "lr"}).
    """
    rename = rename or {}
    flags: list[str] = []
    for field in dataclasses.fields(config):
        if field.name in skip:
            continue
        value = getattr(config, field.name)
        if value is None:
            continue
        if defaults is not None:
            default = getattr(defaults, field.name)
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = dataclasses.MISSING
        if value == default:
            continue
        flag = "--" + (f"{prefix}-" if prefix else "") + rename.get(field.name, field.name.replace("_", "-"))
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            flags += [flag, *(_flag_value(v) for v in value)]
        else:
            text = _flag_value(value)
            # argparse reads "-1e-05" as an option; "--flag=-1e-05" is unambiguous.
            flags += [f"{flag}={text}"] if text.startswith("-") else [flag, text]
    return flags


def _flag_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


class Progress:
    """Progress of a long loop on stderr: a tqdm bar on a terminal, else a few plain lines.

    Where the stream is not a terminal (a log file, a pipe, CI), a line is printed only when another
    tenth of the work is done or 30 s have passed since the last line, and never with carriage
    returns, so logs stay short and readable. Use it as a context manager or call `close`.

    Args:
        total: units of work expected.
        desc: short name shown first, e.g. "synth".
        unit: what one unit is, e.g. "clips".
        enabled: False prints nothing.
        file: the stream; None = sys.stderr at the time of the call.
    """

    LINE_EVERY_SECONDS = 30.0
    LINE_EVERY_FRACTION = 0.1

    def __init__(self, total: int, desc: str, unit: str = "it", *, enabled: bool = True,
                 file: TextIO | None = None):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.file = file if file is not None else sys.stderr
        self.done, self.postfix = 0, ""
        self.start = self._last_time = time.perf_counter()
        self._last_done = 0
        self._bar = None
        if enabled and _is_terminal(self.file):
            try:
                from tqdm import tqdm
            except ImportError:  # plain lines are always there
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=f"[{desc}]", unit=f" {unit}", file=self.file,
                                 dynamic_ncols=True, leave=True)

    def update(self, n: int = 1, **counts: int) -> None:
        """Adds `n` finished units; `counts` (e.g. converted=3, skipped=1) are shown with the progress."""
        self.done += n
        self.postfix = ", ".join(f"{v} {k}" for k, v in counts.items())
        if not self.enabled:
            return
        if self._bar is not None:
            if counts:
                self._bar.set_postfix_str(self.postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.perf_counter()
        if (self.done >= self.total or self._step(self.done) > self._step(self._last_done)
                or now - self._last_time >= self.LINE_EVERY_SECONDS):
            self._last_done, self._last_time = self.done, now
            print(self.line(now), file=self.file, flush=True)

    def _step(self, done: int) -> int:
        """How many whole tenths (LINE_EVERY_FRACTION) of the total `done` units make."""
        return int(done / max(self.total, 1) / self.LINE_EVERY_FRACTION)

    def line(self, now: float | None = None) -> str:
        """The plain progress line: done/total, share, elapsed time, rate and time left."""
        elapsed = (now if now is not None else time.perf_counter()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = f", ~{(self.total - self.done) / rate:.0f} s left" if rate > 0 and self.done < self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        return (f"[{self.desc}] {self.done}/{self.total} {self.unit}{share}{extra}, {elapsed:.0f} s elapsed, "
                f"{rate:.2f} {self.unit}/s{left}")

    def close(self) -> None:
        """Ends the bar (a terminal) or prints the last line if the loop stopped early."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.done != self._last_done:
            self._last_done = self.done
            print(self.line(), file=self.file, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    """A terminal with a width (a bar on a zero-width pseudo-terminal would print nothing)."""
    try:
        return bool(stream.isatty()) and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return False
