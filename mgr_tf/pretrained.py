"""Pre-trained music encoders: musicnn's published TF1 checkpoints converted to Keras 3.

    python -m mgr_tf.pretrained musicnn --wheel musicnn-0.1.0-py3-none-any.whl --model MSD_musicnn --out msd.keras
    python -m mgr_tf.pretrained musicnn --dir unzipped_wheel/ --model MTT_vgg --out mtt_vgg.keras

The weights are those of J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging" (ISMIR late-breaking demo 2019), shipped in the `musicnn` 0.1.0 wheel (ISC licence) as
``musicnn/<MODEL>/{.index,.data-00000-of-00001,.meta,config.json}``. Note the checkpoint files have an
empty stem (prefix ``<model dir>/``) and the stored ``checkpoint`` file names a path of the author's machine,
so the files are staged as ``<model name>.*`` before ``tf.train.load_checkpoint`` reads them.

Checkpoint variables map by name onto the Keras port of `mgr_tf.models.musicnn` (each weighted layer is
named after its TF1 scope); Adam slots and ``beta1_power``/``beta2_power`` are training-only and skipped.
Any other variable without a place in the port, or a port weight absent from the checkpoint, is an error.

`original_graph_outputs` runs the shipped ``.meta`` graph itself (TF1 graph mode on TF 2.x) for parity
checks; `tag` tags audio files; `export_tagger` writes a TF Serving SavedModel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mgr_tf.cli import UserError, quiet_tensorflow, run_cli

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
    import tensorflow as tf

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
    from mgr_tf.models.musicnn import build_musicnn, get_pretrained

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
    from mgr_tf.models.musicnn import get_pretrained

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
    import subprocess

    from mgr_tf.paths import cache_home

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
    from mgr_tf.models.musicnn import PRETRAINED
    from mgr_tf.paths import cache_home

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


# ----------------------------------------------------------------------------------------------
# The shipped TF1 graph, for parity checks.


def inference_graph_def(meta_graph_def):
    """The shipped GraphDef without its training-only part, ready for `tf.compat.v1.import_graph_def`.

    Removes everything under ``gradients/``, the optimiser's nodes (train op ``Adam``, slots, beta powers)
    and every node that depends on a removed one (data or control input: the Saver, the update ops), and
    the stale ``_output_shapes`` attributes and device pins, and gives unseeded random ops a seed.
    """
    import tensorflow as tf

    nodes = list(meta_graph_def.graph_def.node)
    removed = {n.name for n in nodes if n.name.startswith("gradients/") or _OPTIMIZER_NODE.search(n.name)}
    changed = True
    while changed:  # propagate to consumers until nothing more depends on a removed node
        changed = False
        for n in nodes:
            if n.name in removed:
                continue
            if any(inp.lstrip("^").split(":")[0] in removed for inp in n.input):
                removed.add(n.name)
                changed = True
    graph_def = tf.compat.v1.GraphDef()
    graph_def.versions.CopyFrom(meta_graph_def.graph_def.versions)
    graph_def.library.CopyFrom(meta_graph_def.graph_def.library)
    for n in nodes:
        if n.name in removed:
            continue
        kept = graph_def.node.add()
        kept.CopyFrom(n)
        kept.device = ""
        if "_output_shapes" in kept.attr:
            del kept.attr["_output_shapes"]
        if kept.op.startswith("Random") and "seed2" in kept.attr and not (kept.attr["seed"].i or kept.attr["seed2"].i):
            # Dropout's random ops are unseeded; TensorFlow refuses them once op determinism is on (as
            # mgr_tf.train turns it on). Inference never draws from them (is_training is fed False).
            kept.attr["seed"].i, kept.attr["seed2"].i = 1, 1
    return graph_def


def original_graph_outputs(model_dir: str | Path, x: np.ndarray, model_name: str | None = None) -> dict:
    """Runs the shipped `.meta` graph of a musicnn model on patches `x` (batch, 187, 96), in inference mode.

    Variables are restored from the checkpoint (prefix ``<model dir>/`` as shipped, or
    ``<model dir>/<model name>`` when staged); the bool training placeholder is fed False.

    Args:
        model_dir: the model folder (e.g. ``.../musicnn/MSD_musicnn``).
        x: float32 patches.
        model_name: MSD_musicnn etc.; default: the folder's name.

    Returns:
        {"tags": (batch, 50), "embedding": the architecture's embedding (penultimate or flattened pool5)}.
    """
    import tensorflow as tf

    from mgr_tf.models.musicnn import ARCHITECTURES, GRAPH_INPUT, GRAPH_TAGS, get_pretrained

    model_dir = Path(model_dir)
    model_name = model_name or model_dir.name
    arch = ARCHITECTURES[get_pretrained(model_name).architecture]
    stem = _checkpoint_stem(model_dir, model_name)
    meta_path = model_dir / f"{stem or ''}.meta"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: no such graph file")
    meta = tf.compat.v1.MetaGraphDef()
    try:
        meta.ParseFromString(meta_path.read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise UserError(f"{meta_path}: not a MetaGraphDef ({exc})") from None
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(inference_graph_def(meta), name="")
    training = [op.outputs[0] for op in graph.get_operations()
                if op.type == "Placeholder" and op.get_attr("dtype") == tf.bool]
    if len(training) != 1:
        raise UserError(f"{meta_path}: expected one bool (is_training) placeholder, found {len(training)}")
    fetches = {"tags": graph.get_tensor_by_name(GRAPH_TAGS), "embedding": graph.get_tensor_by_name(arch.graph_embedding)}
    variables = [op for op in graph.get_operations() if op.type in ("VariableV2", "VarHandleOp")]
    with checkpoint_prefix(model_dir, model_name) as prefix:
        reader = _load_reader(prefix, _index_file(model_dir, model_name))
        stored = reader.get_variable_to_shape_map()
        with graph.as_default():
            feeds, assigns = {}, []
            for op in variables:
                if op.name not in stored:
                    raise UserError(f"{_index_file(model_dir, model_name)}: checkpoint lacks graph variable {op.name!r}")
                value = tf.compat.v1.placeholder(op.outputs[0].dtype.base_dtype, name=f"restore/{op.name}")
                assigns.append(tf.raw_ops.Assign(ref=op.outputs[0], value=value))
                feeds[value] = reader.get_tensor(op.name)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(assigns, feed_dict=feeds)
            out = sess.run(fetches, feed_dict={graph.get_tensor_by_name(GRAPH_INPUT): np.asarray(x, np.float32),
                                               training[0]: False})
    return {k: np.asarray(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# Using the port: tagging files, embedding, serving.


def _tags_of(model, tags: Sequence[str] | None) -> list[str]:
    from mgr_tf.models.musicnn import PRETRAINED

    if tags is not None:
        return list(tags)
    if model.name in PRETRAINED:
        return list(PRETRAINED[model.name].tags)
    raise ValueError(f"model {model.name!r} is not one of {sorted(PRETRAINED)}: pass its tag names")


def tag_names_of(model) -> list[str]:
    """The tag names of a converted musicnn model (from its name, e.g. MSD_musicnn)."""
    return _tags_of(model, None)


def clip_outputs(model, waveform_16k: np.ndarray, batch_size: int = 32) -> dict:
    """Per-patch outputs of a musicnn port on one 16 kHz clip: {"tags": (P, 50), "embedding": (P, D)}."""
    from mgr_tf.models.musicnn import musicnn_frontend

    patches = musicnn_frontend(np.asarray(waveform_16k, np.float32)).numpy()
    outs = [model(patches[i:i + batch_size], training=False) for i in range(0, len(patches), batch_size)]
    return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in outs[0]}


def tag(model, paths: Sequence[str | Path], top_k: int = 5, tags: Sequence[str] | None = None) -> list[dict]:
    """Top-`top_k` tags of each audio file (tag probabilities averaged over its 3 s patches).

    Args:
        model: a converted musicnn model (`keras.saving.load_model` of the converter's output).
        paths: audio files (any rate; resampled to 16 kHz).
        top_k: tags per file.
        tags: tag names (default: those of the model's name, e.g. MSD_musicnn).

    Returns:
        One {"path", "tags": [(tag, probability), ...]} per file, most likely first.
    """
    from mgr_tf.models.musicnn import load_audio_16k

    names = _tags_of(model, tags)
    results = []
    for path in paths:
        probs = clip_outputs(model, load_audio_16k(path))["tags"].mean(axis=0)
        order = np.argsort(-probs)[:top_k]
        results.append({"path": str(path), "tags": [(names[i], float(probs[i])) for i in order]})
    return results


def export_tagger(keras_model, out_dir: str | Path, tags: Sequence[str] | None = None) -> Path:
    """Writes a TF Serving SavedModel of a musicnn port as `out_dir/<next version>/` (atomic rename).

    Signatures:
        serving_default: ``patch`` float32 (batch, 187, 96) log-mel -> ``tags`` (batch, 50), ``embedding``.
        serving_waveform: ``waveform`` float32 (batch, samples), mono 16 kHz (at least 3 s) -> ``tags``
            (batch, 50) and ``embedding``, each averaged over the clip's 3 s patches.
    ``assets/labels.txt`` lists the tag names, one a line, in output order.
    """
    import keras
    import tensorflow as tf

    from mgr_tf.models.musicnn import EMBEDDING_OUTPUT, N_MELS, PATCH_FRAMES, TAGS_OUTPUT, musicnn_frontend
    from mgr_tf.serving.export import write_version

    names = _tags_of(keras_model, tags)

    def write(tmp: Path) -> None:
        archive = keras.export.ExportArchive()
        archive.track(keras_model)

        def serve_patches(patch):
            out = keras_model(patch, training=False)
            return {TAGS_OUTPUT: out[TAGS_OUTPUT], EMBEDDING_OUTPUT: out[EMBEDDING_OUTPUT]}

        def serve_waveform(waveform):
            patches = musicnn_frontend(waveform)  # (batch, P, 187, 96)
            shape = tf.shape(patches)
            out = keras_model(tf.reshape(patches, [-1, PATCH_FRAMES, N_MELS]), training=False)
            return {k: tf.reduce_mean(tf.reshape(out[k], tf.concat([shape[:2], [-1]], 0)), axis=1)
                    for k in (TAGS_OUTPUT, EMBEDDING_OUTPUT)}

        archive.add_endpoint("serving_default", serve_patches,
                             input_signature=[tf.TensorSpec([None, PATCH_FRAMES, N_MELS], tf.float32, name="patch")])
        archive.add_endpoint("serving_waveform", serve_waveform,
                             input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
        archive.write_out(str(tmp), verbose=False)

    config = {"kind": "musicnn_tagger", "model": keras_model.name, "tags": list(names), "sample_rate": 16000,
              "signatures": ["serving_default", "serving_waveform"],
              "weights": "musicnn 0.1.0 (Pons and Serra, ISMIR-LBD 2019), ISC licence"}
    return write_version(Path(out_dir), write, labels=names, config=config)


# ----------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    from mgr_tf.models.musicnn import ARCHITECTURES, PRETRAINED

    parser = argparse.ArgumentParser(
        prog="python -m mgr_tf.pretrained",
        description="Convert published pre-trained music encoders to Keras 3 (.keras) files.")
    families = parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
    musicnn = families.add_parser(
        "musicnn", help="musicnn 0.1.0 taggers (Pons & Serra 2019): MTT/MSD x musicnn/vgg",
        description="Convert one TF1 checkpoint of the musicnn 0.1.0 wheel (get it with "
                    "`pip download musicnn==0.1.0 --no-deps`) to a Keras 3 model with outputs 'tags' "
                    "(batch, 50) and 'embedding', taking (batch, 187, 96) log-mel patches "
                    "(mgr_tf.models.musicnn.musicnn_frontend).",
        epilog="Architectures: " + "; ".join(f"{k}: embedding = {a.embedding}" for k, a in ARCHITECTURES.items()))
    source = musicnn.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", metavar="PATH", help="the musicnn-0.1.0-py3-none-any.whl file (read as a zip)")
    source.add_argument("--dir", metavar="PATH",
                        help="an unzipped wheel, its musicnn/ folder, or one model folder (holding .index, "
                             ".data-00000-of-00001, .meta, config.json)")
    musicnn.add_argument("--model", required=True, choices=sorted(PRETRAINED), help="which model to convert")
    musicnn.add_argument("--out", required=True, metavar="FILE.keras", help="output Keras file")
    musicnn.add_argument("--export", metavar="DIR", default=None,
                         help="also write a TF Serving auto-tagger to DIR/<version>/ (serving_waveform: mono 16 kHz "
                              "audio -> the 50 tags; python -m mgr_tf.predict DIR song.mp3 --tags)")
    args = parser.parse_args(argv)

    out = convert(args.model, args.out, wheel=args.wheel, directory=args.dir)
    print(f"wrote {out} ({args.model})")
    if args.export:
        import keras

        exported = export_tagger(keras.saving.load_model(out, compile=False), args.export)
        print(f"exported the tagger: {exported}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
