"""SavedModel export that TF Serving loads as is: `exported_models/<name>/<version>/`.

Signatures:
- `serving_default`: `spectrogram` (batch, time, bands) float32, raw (normalisation is inside the model).
  Genre models answer `probabilities` (batch, classes) and `genre` (batch,) label strings; regression
  models answer one (batch,) output per target, named by the target (`valence`, ..., or the data's own names,
  listed in assets/targets.txt).
- `serving_waveform` (models trained on full, not beat-synchronous, features, when the in-graph feature
  extractor is available): `waveform` (batch, samples) float32 mono at the feature type's sample rate
  (the feature config's, 22050 Hz; 16 kHz for musicnn's front end; `waveform_sample_rate` in
  assets/config.json); the same outputs.
- `serving_fused` (feature types derived from the stored fused arrays, other than fused itself): the
  fused (batch, time, 140) arrays, the feature type derived in the graph.

Each signature checks its input in the graph first (`mgr_tf.serving.guards`): NaN, Inf, absurd values, empty or
all-padding spectrograms and too short or silent waveforms get an error status (TF Serving: HTTP 400), not a genre.

Each version is written to a hidden temporary folder beside its final place and renamed in one step,
so a server polling the model folder never sees a half-written version; the temporary folders of killed exports
(`.tmp-<host>-<pid>-*`, their process gone) are removed by the next export. `assets/` holds `labels.txt`
(class names), `config.json` (everything needed to rebuild the run) and `metrics.json`. The versions under one
name answer alike: a version whose task, outputs or input differ from the latest one's is refused
(`check_interface`), since a server would switch to it without its clients knowing.

`python -m mgr_tf.export RUN_DIR [--name NAME] [--root DIR]` (`export_run`) exports a finished run's model again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import DataConfig, FeatureConfig, from_dict
from mgr_tf.core.io import write_json
from mgr_tf.core.paths import DEFAULT_EXPORT_ROOT
from mgr_tf.core.paths import check_export_name as _check_export_name
from mgr_tf.features.spectral import AudioFeatures
from mgr_tf.models import get_feature_type
from mgr_tf.models.blend import blend_model, fused_bands, read_blend
from mgr_tf.models.build import INPUT_NAME, load_keras_model
from mgr_tf.serving.guards import checked_spectrogram, checked_waveform
from mgr_tf.tasks import Task, task_of_outputs

# What the clients of an export rely on: the versions under one name must agree on these (`check_interface`).
INTERFACE_KEYS = ("kind", "task", "class_names", "targets", "tags", "num_bands", "features")
_STALE_SECONDS = 24 * 3600  # a temporary folder without a process id (older versions) is stale after a day


def next_version(model_root: Path) -> int:
    """The next integer version under a model folder (1 if there is none)."""
    versions = [int(p.name) for p in model_root.iterdir() if p.is_dir() and p.name.isdigit()] if model_root.exists() else []
    return max(versions, default=0) + 1


def _named_outputs(task: Task, outputs: Mapping, class_names: Sequence[str]):
    return task.serving_outputs(outputs, class_names)


def _add_waveform_endpoint(archive, model, task, class_names, feature_config, features) -> None:
    """Adds `serving_waveform`: waveforms through the in-graph feature extractor, then the model."""
    spec = get_feature_type(features)
    if spec.waveform_layer is not None:  # e.g. musicnn's 16 kHz front end
        extractor = spec.waveform_layer(feature_config or FeatureConfig())
    else:
        extractor = AudioFeatures.from_feature_config(feature_config, bands=features)
    archive.track(extractor)
    rate = spec.sample_rate(feature_config or FeatureConfig())

    def serve_waveform(waveform):
        spectrogram = extractor(checked_waveform(waveform, rate))
        return _named_outputs(task, model({INPUT_NAME: spectrogram}, training=False), class_names)

    archive.add_endpoint("serving_waveform", serve_waveform,
                         input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])


def _add_fused_endpoint(archive, model, task, class_names, feature_config, features) -> None:
    """Adds `serving_fused`: the stored fused arrays (time, mel + chroma), the feature type derived in the graph."""
    cfg = feature_config or FeatureConfig()

    def serve_fused(spectrogram):
        derived = get_feature_type(features).derive(checked_spectrogram(spectrogram), cfg)
        return _named_outputs(task, model({INPUT_NAME: derived}, training=False), class_names)

    archive.add_endpoint("serving_fused", serve_fused, input_signature=[
        tf.TensorSpec([None, None, cfg.n_mels + cfg.n_chroma], tf.float32, name=INPUT_NAME)])


def export_model(model, name: str, *, task: str | Task, class_names: Sequence[str], num_bands: int,
                 config: Mapping, metrics: Mapping | None = None, root: str | Path = DEFAULT_EXPORT_ROOT,
                 waveform: bool = False, feature_config=None, features: str = "fused",
                 targets: Sequence[str] | None = None) -> Path:
    """Writes `root/name/<next version>/` atomically and returns that folder.

    Args:
        model: a trained Keras model with named outputs (see docs/architecture.md).
        name: model name (TF Serving's `model_name`).
        task: the task (or its name: genre, regression, valence, ...).
        class_names: genre class names (ignored for regression tasks).
        num_bands: bands of the `spectrogram` input.
        config: the run's config dict (written to assets/config.json).
        metrics: evaluation metrics (written to assets/metrics.json).
        root: export root folder.
        waveform: also add the `serving_waveform` signature (full-length features only).
        feature_config: the `FeatureConfig` the model's features were computed with.
        features: the feature type (a name in `mgr_tf.features.types`); for the waveform signature, and any but
            fused also gets `serving_fused`, which takes the stored fused arrays and derives it in the graph.
        targets: with a task name, the regression outputs of the model (its config's "targets"); written with
            the output names to assets/targets.txt.
    """
    task = task if isinstance(task, Task) else task_of_outputs(task, targets)
    spec = get_feature_type(features)
    fused = features != "fused" and not spec.stored  # a stored encoder input cannot be derived from fused arrays
    fused = fused or bool(config.get("blend"))  # a blend takes them by default: the same endpoint, kept for clients

    def write(tmp: Path) -> None:
        with tf.device("/CPU:0"):
            archive = keras.export.ExportArchive()
            archive.track(model)

            def serve(spectrogram):
                return _named_outputs(task, model({INPUT_NAME: checked_spectrogram(spectrogram)}, training=False),
                                      class_names)

            archive.add_endpoint("serving_default", serve,
                                 input_signature=[tf.TensorSpec([None, None, num_bands], tf.float32,
                                                                name=INPUT_NAME)])
            if waveform:
                _add_waveform_endpoint(archive, model, task, class_names, feature_config, features)
            if fused:
                _add_fused_endpoint(archive, model, task, class_names, feature_config, features)
            archive.write_out(str(tmp), verbose=False)

    signatures = (["serving_default"] + (["serving_waveform"] if waveform else [])
                  + (["serving_fused"] if fused else []))
    extra = {"waveform_sample_rate": spec.sample_rate(feature_config or FeatureConfig())} if waveform else {}
    outputs = () if task.classification else task.outputs
    return write_version(Path(root) / check_export_name(name), write, labels=class_names,
                         config={**dict(config), "signatures": signatures, **extra}, metrics=metrics,
                         targets=outputs)


def check_export_name(name: str) -> str:
    """`name` if it can name an export (`mgr_tf.core.paths.check_export_name`), else a UserError."""
    try:
        return _check_export_name(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def interface(config: Mapping) -> dict:
    """The part of an export's config.json its clients rely on (`INTERFACE_KEYS`): task, outputs and input."""
    found = {key: config.get(key) for key in INTERFACE_KEYS}
    found["features"] = (config.get("data") or {}).get("features", config.get("features"))
    return {key: list(value) if isinstance(value, (list, tuple)) else value for key, value in found.items()}


def check_interface(model_root: str | Path, config: Mapping) -> None:
    """Refuses a new version of `model_root` that would answer other than its latest version does.

    TF Serving loads the highest version as soon as it appears: a version with other classes (in another order),
    other targets, another task or another input would change every client's answers without a word.

    Args:
        model_root: the export's model folder (its versions inside).
        config: the new version's config (a run's config.json, or an export's assets/config.json).

    Raises:
        UserError: the latest version's assets/config.json says otherwise (naming the first difference).
    """
    model_root = Path(model_root)
    latest = next_version(model_root) - 1
    path = model_root / str(latest) / "assets" / "config.json"
    if latest < 1 or not path.is_file():
        return
    try:
        served = interface(json.loads(path.read_text()))
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return  # not an mgr_tf export's config: nothing to compare with
    new = interface(config)
    for key in INTERFACE_KEYS:
        if served[key] != new[key]:
            raise UserError(f"{model_root}/{latest} serves {key} {served[key]!r}, this model {new[key]!r}: versions "
                            "under one name must answer alike (a server switches to the newest unannounced); export "
                            f"under another name, or move {model_root} away")


def _temporary_folder(model_root: Path) -> Path:
    """A new temporary folder name beside the versions, naming this host and process (for `_remove_stale`)."""
    return model_root / f".tmp-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _remove_stale(model_root: Path) -> None:
    """Removes the temporary folders of exports killed part-way: this host's whose process is gone, and older
    ones (without a process id) after a day. Another live export's folder is left alone."""
    for tmp in model_root.glob(".tmp-*"):
        parts = tmp.name.split("-")
        if len(parts) == 4 and parts[2].isdigit():
            if parts[1] != _host() or _alive(int(parts[2])):
                continue
        elif time.time() - tmp.stat().st_mtime < _STALE_SECONDS:
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_version(model_root: Path, write, *, labels: Sequence[str], config: Mapping,
                  metrics: Mapping | None = None, targets: Sequence[str] = ()) -> Path:
    """Writes the next SavedModel version of `model_root` atomically and returns its folder.

    `write(tmp)` writes the SavedModel into a temporary folder beside the versions; the assets
    (labels.txt, config.json, metrics.json) are added, the graph is checked for GPU-only ops, and the
    folder is renamed to the next integer version in one step, so TF Serving never loads half a version
    (a concurrent writer that takes the version first makes this one take the next).

    Args:
        model_root: the model folder (TF Serving's model base path).
        write: fn(tmp folder) writing the SavedModel (e.g. `ExportArchive.write_out`).
        labels: written to assets/labels.txt, one a line (class or tag names; empty for regression).
        config: written to assets/config.json.
        metrics: written to assets/metrics.json.
        targets: regression output names, written to assets/targets.txt one a line (none: no file).
    """
    model_root = Path(model_root)
    check_interface(model_root, config)
    model_root.mkdir(parents=True, exist_ok=True)
    _remove_stale(model_root)
    tmp = _temporary_folder(model_root)
    try:
        write(tmp)
        cudnn = find_ops(tmp, "Cudnn")
        if cudnn:
            raise UserError(f"the export would contain GPU-only ops {sorted(cudnn)}; export from a CPU process "
                            "(CUDA_VISIBLE_DEVICES=-1 python -m mgr_tf.export RUN_DIR)")
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        (assets / "labels.txt").write_text("".join(f"{name}\n" for name in labels))
        if targets:
            (assets / "targets.txt").write_text("".join(f"{name}\n" for name in targets))
        write_json(assets / "config.json", dict(config))
        write_json(assets / "metrics.json", dict(metrics or {}))
        check_interface(model_root, config)  # again: another export may have added a version meanwhile
        while True:
            final = model_root / str(next_version(model_root))
            try:
                os.rename(tmp, final)
                return final
            except OSError:
                if not final.exists():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def export_run(run_dir: Path, *, name: str | None = None, root: str = "exported_models", metrics=None) -> Path:
    """Exports a run's `model.keras` as the next SavedModel version, from a CPU-only process if a GPU is visible."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    name = check_export_name(name or config.get("export_name") or run_dir.name)
    if tf.config.list_physical_devices("GPU"):
        # An LSTM traced on a GPU is exported with cuDNN-only ops that CPU serving cannot run.
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
        out = subprocess.run([sys.executable, "-m", "mgr_tf.export", str(run_dir), "--name", name, "--root", root],
                             env=env, check=True, capture_output=True, text=True)
        return Path(out.stdout.strip().split()[-1])
    if metrics is None:
        report = run_dir / "report.json"
        metrics = json.loads(report.read_text())["metrics"] if report.exists() else {}
    model = load_keras_model(run_dir)
    try:
        data = from_dict(DataConfig, config["data"])
        features = from_dict(FeatureConfig, config["features"])
    except ValueError as exc:
        raise UserError(f"{run_dir / 'config.json'}: {exc}") from None
    blend = read_blend(run_dir)
    if blend is not None:  # the model and its statistics partner, served as one model on the fused arrays
        partner = load_keras_model(run_dir / (blend.get("partner_run") or blend["baseline_run"]))
        model = blend_model(model, partner, blend["weight_model"], features=data.features, feature_config=features)
        config = served_config({**config, "blend": blend})
    return export_model(model, name, task=config["task"], class_names=config["class_names"],
                        num_bands=config["num_bands"], config=config, metrics=metrics, root=root,
                        waveform=not data.beat, feature_config=features, features=config["data"]["features"],
                        targets=config.get("targets"))


def served_config(config: Mapping) -> dict:
    """What an export of a run serves: the run's config, or for a blended run (config "blend") the fused arrays
    as input, which the model's own feature type and its partner's statistics are both computed from."""
    config = dict(config)
    if not config.get("blend"):
        return config
    features = from_dict(FeatureConfig, config["features"])
    bands = fused_bands(features)
    model_features = config["data"]["features"]
    return {**config, "data": {**config["data"], "features": "fused"}, "num_bands": bands,
            "feature_type": {"name": "fused", "bands": bands,
                             "description": f"the fused arrays; the model derives its {model_features} from them"},
            "model_features": model_features}




RUN_CONFIG_KEYS = ("data", "features", "task", "class_names", "num_bands")  # what an export of a run reads


def read_run_config(run_dir: str | Path) -> dict:
    """A run folder's config.json, with one clear line when it is missing, not JSON or lacks what an export reads.

    Raises:
        UserError: naming the file and the problem.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a training run folder (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a JSON file ({exc})") from None
    missing = [key for key in RUN_CONFIG_KEYS if not isinstance(config, dict) or key not in config]
    if missing:
        raise UserError(f"{path}: lacks {', '.join(missing)} (not a run's config.json written by mgr_tf.train)")
    return config


def find_ops(saved_model_dir: str | Path, fragment: str) -> set[str]:
    """Op types in a SavedModel's graph and function library whose name contains `fragment`."""
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    found = set()
    for meta in proto.meta_graphs:
        nodes = list(meta.graph_def.node)
        for function in meta.graph_def.library.function:
            nodes.extend(function.node_def)
        found.update(n.op for n in nodes if fragment in n.op)
    return found


def resolve_model_dir(path: str | Path) -> Path:
    """A SavedModel version folder from either the version folder or the model folder (highest version).

    Raises:
        UserError: when the folder is missing or holds no SavedModel.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: model folder not found")
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted((int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    for v in versions:
        if (path / str(v) / "saved_model.pb").exists():
            return path / str(v)
    raise UserError(f"{path}: not a SavedModel (no saved_model.pb here nor in a numbered version folder)")


def read_export_config(model_dir: Path) -> dict:
    """The `assets/config.json` of an export, with a clear error when it is missing or corrupt."""
    path = Path(model_dir) / "assets" / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing; this SavedModel was not exported by mgr_tf") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: corrupt JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config
