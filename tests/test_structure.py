"""The package's structure as docs/architecture.md states it: the rule for imports inside functions, module sizes,
command lines that parse their flags (and print --help) without TensorFlow, and without TensorFlow's C++ notices.

The layers and the absence of import cycles are checked by `lint-imports` (the contracts in pyproject.toml),
which `.ci/run` runs before the tests.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mgr_tf"
MAX_MODULE_LINES = 600
# An import inside a function says why on its own line (see docs/architecture.md).
REASONS = ("TensorFlow on demand", "optional", "heavy")
COMMANDS = ("train", "cv", "tune", "predict", "export", "ingest", "synth", "pretrained", "ensemble", "explore",
            "reproduce", "bench")


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "dummy_data" not in p.parts)


def _function_level_imports(path: Path):
    """(line number, source text) of each import of mgr_tf inside a function body of `path`."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.startswith("mgr_tf") for n in names):
                    text = "\n".join(lines[node.lineno - 2:node.end_lineno])  # the line before may hold the reason
                    found.append((node.lineno, text))
    return found


def test_imports_inside_functions_say_why():
    unexplained = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in _modules()
                   for line, text in _function_level_imports(path) if not any(r in text for r in REASONS)]
    assert not unexplained, f"imports inside functions without a reason ({', '.join(REASONS)}): {unexplained}"


def test_no_module_is_longer_than_the_limit():
    sizes = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines()) for p in _modules()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_long, too_long


_HELP_WITHOUT_TENSORFLOW = """
import contextlib, importlib, io, json, sys
results = {}
for command in sys.argv[1:]:
    module = importlib.import_module("mgr_tf.bench.__main__" if command == "bench" else f"mgr_tf.{command}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            module.main(["--help"])
        except SystemExit as exit:
            code = exit.code
    results[command] = {"code": code, "help": out.getvalue()[:200], "tensorflow": "tensorflow" in sys.modules}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_help_of_every_command_needs_no_tensorflow():
    """`--help` (and so every flag error, which argparse finds first) never imports TensorFlow."""
    proc = subprocess.run([sys.executable, "-c", _HELP_WITHOUT_TENSORFLOW, *COMMANDS], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for command, result in results.items():
        assert result["code"] == 0 and f"python -m mgr_tf.{command}" in result["help"], (command, result)
        assert not result["tensorflow"], f"python -m mgr_tf.{command} --help imported TensorFlow"


@pytest.mark.slow
def test_a_command_prints_none_of_tensorflows_notices(genre_run, tiny_corpus):
    """TensorFlow's start-up lines (absl's "All log messages before absl::InitializeLog()", the oneDNN and CUDA
    "I0000 ..." lines, "failed call to cuInit") are hidden by default; the command's own output is all there is."""
    from tests.conftest import export_dir

    sample = sorted((tiny_corpus / "fma_genre_spectrograms" / "test").glob("*.npy*"))[0]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the user set nothing
    proc = subprocess.run([sys.executable, "-m", "mgr_tf.predict", str(export_dir(genre_run)), str(sample)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(sample) in proc.stdout
    notices = [line for line in proc.stderr.splitlines()
               if "absl::InitializeLog" in line or "cuInit" in line or "oneDNN" in line or "cuda" in line
               or line[:1] in "IWE" and line[1:5].isdigit()]
    assert not notices, notices
