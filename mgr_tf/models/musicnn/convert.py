"""musicnn's published TF1 checkpoints converted to the Keras 3 port, and the converted encoders cached.

    python -m mgr_tf.pretrained musicnn --wheel musicnn-0.1.0-py3-none-any.whl --model MSD_musicnn --out msd.keras
    python -m mgr_tf.pretrained musicnn --dir unzipped_wheel/ --model MTT_vgg --out mtt_vgg.keras

The weights are those of J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging" (ISMIR late-breaking demo 2019), shipped in the `musicnn` 0.1.0 wheel (ISC licence) as
``musicnn/<MODEL>/{.index,.data-00000-of-00001,.meta,config.json}``. Note the checkpoint files have an
empty stem (prefix ``<model dir>/``) and the stored ``checkpoint`` file names a path of the author's machine,
so the files are staged as ``<model name>.*`` before ``tf.train.load_checkpoint`` reads them.

Checkpoint variables map by name onto the Keras port of `architecture` (each weighted layer is named after
its TF1 scope); Adam slots and ``beta1_power``/``beta2_power`` are training-only and skipped. Any other
variable without a place in the port, or a port weight absent from the checkpoint, is an error.
`encoder_file` keeps each converted model in the cache, converted once from the wheel that pip fetches.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.core.paths import cache_home
from mgr_tf.models.musicnn.architecture import build_musicnn
from mgr_tf.models.musicnn.presets import PRETRAINED, get_pretrained

DATA_SUFFIX = ".data-00000-of-00001"
CHECKPOINT_SUFFIXES = (".index", DATA_SUFFIX)
# Variables only the optimiser needs: Adam's slots and its beta powers (and a step counter, if any).
_TRAINING_ONLY_VARIABLE = re.compile(r"(^|/)(Adam(_\d+)?|beta[12]_power|global_step)$")
# Graph nodes of the optimiser (the train op "Adam", its update ops, slots, beta powers).
_OPTIMIZER_NODE = re.compile(r"(^|/)(Adam(_\d+)?|beta[12]_power)(/|$)")
_EXPECTED_CONFIG = {"xInput": 187, "yInput": 96, "num_classes_dataset": 50}
_EXPECTED_AUDIO = {"resample_sr": 16000, "hop": 256, "n_fft": 512, "n_mels": 96}


# ----------------------------------------------------------------------------------------------
# Finding and staging the model files.


def _member_prefix(model_name: str) -> str:
    return f"musicnn/{model_name}/"


def stage_from_wheel(wheel: str | Path, model_name: str, dest: str | Path) -> Path:
    """Extracts one model of the musicnn wheel into `dest/<model>/<model>.{index,data-...,meta}` + config.json.

    Raises:
        UserError: the wheel is missing, not a zip file, or lacks the model's files.
    """
    wheel = Path(wheel)
    if not wheel.is_file():
        raise UserError(f"{wheel}: no such wheel file")
    out = Path(dest) / model_name
    out.mkdir(parents=True, exist_ok=True)
    prefix = _member_prefix(model_name)
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for suffix in (*CHECKPOINT_SUFFIXES, ".meta", "config.json"):
                member = prefix + suffix
                if member not in names:
                    raise UserError(f"{wheel}: has no {member} (is it the musicnn 0.1.0 wheel, and is "
                                    f"{model_name} one of its models?)")
                target = out / (suffix if suffix == "config.json" else model_name + suffix)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile:
        raise UserError(f"{wheel}: not a wheel (zip) file") from None
    return out


def find_model_dir(root: str | Path, model_name: str) -> Path:
    """The folder holding `model_name`'s checkpoint under `root`.

    `root` may be the model folder itself, the ``musicnn`` package folder, or an unzipped wheel.

    Raises:
        UserError: no such folder, or no checkpoint of `model_name` in it.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    for candidate in (root / model_name, root / "musicnn" / model_name, root):
        if _checkpoint_stem(candidate, model_name) is not None:
            return candidate
    raise UserError(f"{root}: holds no checkpoint of {model_name} (looked for {model_name}/.index, "
                    f"musicnn/{model_name}/.index and {model_name}.index)")


def _checkpoint_stem(model_dir: Path, model_name: str) -> str | None:
    """The file stem of the checkpoint in `model_dir`: "" (as shipped), the model name (staged), or None."""
    for stem in ("", model_name):
        if (model_dir / f"{stem}.index").is_file():
            return stem
    return None


@contextlib.contextmanager
def checkpoint_prefix(model_dir: str | Path, model_name: str) -> Iterator[str]:
    """Yields a checkpoint prefix `tf.train.load_checkpoint` accepts, for either file layout.

    The shipped layout (``<dir>/.index``) has prefix ``<dir>/``, which TensorFlow takes for a folder and
    resolves through the stale ``checkpoint`` file; its files are linked as ``<tmp>/<model>.*`` instead.
    """
    model_dir = Path(model_dir)
    stem = _checkpoint_stem(model_dir, model_name)
    if stem is None:
        raise UserError(f"{model_dir / '.index'}: no such checkpoint index (nor {model_name}.index)")
    if stem:
        yield str(model_dir / stem)
        return
    with tempfile.TemporaryDirectory(prefix="musicnn-ckpt-") as tmp:
        for suffix in (*CHECKPOINT_SUFFIXES, ".meta"):
            src = model_dir / suffix
            if src.exists():
                try:
                    os.symlink(src.resolve(), Path(tmp) / (model_name + suffix))
                except OSError:
                    shutil.copyfile(src, Path(tmp) / (model_name + suffix))
        yield str(Path(tmp) / model_name)


def _index_file(model_dir: Path, model_name: str) -> Path:
    stem = _checkpoint_stem(model_dir, model_name)
    return model_dir / f"{stem if stem is not None else ''}.index"


def _load_reader(prefix: str, label: Path):
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise UserError(f"{label}: cannot read the checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def check_config(model_dir: Path, model_name: str) -> None:
    """Checks the model's config.json (if present) against the port's fixed input and signal settings."""
    path = model_dir / "config.json"
    if not path.is_file():
        return
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None
    audio = config.get("audio_rep", {})
    for section, expected in ((config, _EXPECTED_CONFIG), (audio, _EXPECTED_AUDIO)):
        for key, value in expected.items():
            if key in section and section[key] != value:
                raise UserError(f"{path}: {key} is {section[key]!r}, the {model_name} port expects {value!r}")


# ----------------------------------------------------------------------------------------------
# Conversion.


def assign_checkpoint_weights(model, reader, label: str | Path) -> None:
    """Sets every weight of the Keras port `model` from `reader` (a CheckpointReader), matched by name.

    The checkpoint name of a weight is ``<layer name>/<weight name>`` (e.g. ``conv2d_3/kernel``,
    ``batch_normalization_7/moving_variance``). Optimiser variables in the checkpoint are ignored.

    Raises:
        UserError: naming `label` and the first missing or extra variable, or a shape mismatch.
    """
    shapes = reader.get_variable_to_shape_map()
    stored = {name for name in shapes if not _TRAINING_ONLY_VARIABLE.search(name)}
    wanted = {f"{layer.name}/{w.name}": w for layer in model.layers for w in layer.weights}
    missing = sorted(set(wanted) - stored)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{label}: checkpoint lacks variable {missing[0]!r}{more}, needed by the {model.name} port")
    extra = sorted(stored - set(wanted))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UserError(f"{label}: checkpoint has variable {extra[0]!r}{more} that the {model.name} port has no "
                        "place for")
    for name, weight in wanted.items():
        if tuple(shapes[name]) != tuple(weight.shape):
            raise UserError(f"{label}: variable {name!r} has shape {tuple(shapes[name])}, the {model.name} port "
                            f"expects {tuple(weight.shape)}")
    for name, weight in wanted.items():
        weight.assign(reader.get_tensor(name).astype(np.float32))


def load_pretrained(model_dir: str | Path, model_name: str):
    """The Keras port of `model_name` with the weights of the checkpoint in `model_dir` (either layout)."""
    get_pretrained(model_name)
    model_dir = Path(model_dir)
    check_config(model_dir, model_name)
    label = _index_file(model_dir, model_name)
    model = build_musicnn(model_name)
    with checkpoint_prefix(model_dir, model_name) as prefix:
        assign_checkpoint_weights(model, _load_reader(prefix, label), label)
    return model


def convert(model_name: str, out: str | Path, *, wheel: str | Path | None = None,
            directory: str | Path | None = None) -> Path:
    """Converts one shipped model (from the wheel file or an unzipped folder) to a `.keras` file."""
    get_pretrained(model_name)
    out = Path(out)
    if out.suffix != ".keras":
        raise UserError(f"{out}: the output file must end in .keras")
    if (wheel is None) == (directory is None):
        raise UserError("give exactly one of --wheel and --dir")
    with tempfile.TemporaryDirectory(prefix="musicnn-wheel-") as tmp:
        if wheel is not None:
            model_dir = stage_from_wheel(wheel, model_name, tmp)
            label = f"{wheel}:{_member_prefix(model_name)}.index"
        else:
            model_dir = find_model_dir(directory, model_name)
            label = str(_index_file(model_dir, model_name))
        try:
            model = load_pretrained(model_dir, model_name)
        except UserError as exc:
            # Name the user's file, not the staging copy.
            raise UserError(str(exc).replace(str(_index_file(model_dir, model_name)), label)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return out


WHEEL_REQUIREMENT = "musicnn==0.1.0"


def cached_wheel() -> Path:
    """The musicnn 0.1.0 wheel in the cache (`$MGR_TF_HOME/musicnn_wheel/`), fetched with `pip download` once.

    Raises:
        UserError: pip cannot fetch it (no package index reachable): the message says what to do instead.
    """
    wheel_dir = cache_home() / "musicnn_wheel"
    wheels = sorted(wheel_dir.glob("musicnn-0.1.0-*.whl"))
    if not wheels:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        print(f"mgr_tf: fetching the musicnn weights: pip download {WHEEL_REQUIREMENT} --no-deps -d {wheel_dir} "
              "(once)", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps", "-d",
                               str(wheel_dir)], capture_output=True, text=True, timeout=600)
        wheels = sorted(wheel_dir.glob("musicnn-0.1.0-*.whl"))
        if done.returncode or not wheels:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel written"]
            raise UserError(f"cannot fetch the musicnn weights with pip ({last[0]}); download "
                            f"`pip download {WHEEL_REQUIREMENT} --no-deps` where the package index is reachable, "
                            "convert it with `python -m mgr_tf.pretrained musicnn --wheel WHEEL --model NAME --out "
                            "FILE.keras` and pass --musicnn-encoder FILE.keras")
    return wheels[0]


def encoder_file(name_or_path: str) -> Path:
    """A converted musicnn model: a `.keras` path as given, or a wheel model name converted once into the cache.

    Args:
        name_or_path: MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg (cached as `$MGR_TF_HOME/musicnn/<name>.keras`,
            converted from the cached wheel), or a `.keras` file written by `python -m mgr_tf.pretrained musicnn`.

    Raises:
        UserError: a path that does not exist, or a name that is neither.
    """
    if name_or_path in PRETRAINED:
        out = cache_home() / "musicnn" / f"{name_or_path}.keras"
        if not out.is_file():  # converted beside it, then renamed: a killed conversion leaves no half file
            tmp = out.with_name(f".{os.getpid()}-{out.name}")
            convert(name_or_path, tmp, wheel=cached_wheel())
            tmp.replace(out)
        return out
    path = Path(name_or_path).expanduser()
    if path.suffix != ".keras":
        raise UserError(f"musicnn encoder {name_or_path!r}: give one of {', '.join(PRETRAINED)} or a .keras file "
                        "written by python -m mgr_tf.pretrained musicnn")
    if not path.is_file():
        raise UserError(f"{path}: musicnn encoder file not found")
    return path
