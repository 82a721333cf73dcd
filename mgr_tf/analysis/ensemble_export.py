"""One SavedModel that serves an ensemble of genre models trained on different feature types.

Signatures (TF Serving loads the folder as it is, like `mgr_tf.serving.export`):
- `serving_default`: `spectrogram`, float32 (batch, time, mel + chroma), the *fused* array raw, as stored.
  Each member derives its own feature type from it in the graph (`mgr_tf.features.types.derive`: mel rows,
  chroma rows, MFCCs, ...) and runs its model (its normalisation is inside it).
- `serving_waveform` (when no member is beat-synchronous): `waveform`, float32 (batch, samples) mono at the
  members' sample rate; the fused features are computed once in the graph and feed every member.

Outputs: `probabilities` (batch, classes), the members' mean; `genre` (batch,), the label the chosen rule
decides (`mgr_tf.analysis.rules`, the same code that scored it); `member_<i>_probabilities` per member.

`assets/config.json` reads like a fused genre model's (so `python -m mgr_tf.predict` serves it as it is)
plus an `ensemble` entry with each member's run folder and config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf

from mgr_tf.analysis.rules import decide
from mgr_tf.core.cli import UserError
from mgr_tf.core.config import to_dict
from mgr_tf.features.spectral import fused_features
from mgr_tf.features.types import derive, get_feature_type
from mgr_tf.models.build import INPUT_NAME
from mgr_tf.serving.export import write_version
from mgr_tf.serving.guards import checked_spectrogram, checked_waveform


def _stft_settings(member) -> dict:
    """The feature settings that decide the fused array (n_mfcc only shapes one member's derivation)."""
    return {k: v for k, v in to_dict(member.feature_config).items() if k != "n_mfcc"}


def check_exportable(members: Sequence, name: str) -> None:
    """Refuses, with one line, ensembles that cannot share one spectrogram input.

    Raises:
        UserError: a bad export name, members mixing beat-synchronous and full-length inputs, or members whose
            arrays were made with different feature settings.
    """
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"bad export name {name!r}: use a plain folder name")

    stored = [m.label for m in members if get_feature_type(m.data.features).stored]
    if stored:
        raise UserError(f"--export: {', '.join(stored)} read an encoder input stored from the audio, which the "
                        "ensemble's one served spectrogram (the fused arrays) cannot give; evaluate without --export")
    beats = {m.data.beat for m in members}
    if len(beats) > 1:
        raise UserError("--export needs members that all take full-length or all take beat-synchronous "
                        f"spectrograms (one served input); got {', '.join(m.label for m in members)}")
    first = members[0]
    for m in members[1:]:
        if _stft_settings(m) != _stft_settings(first):
            raise UserError(f"--export: {first.run_dir} and {m.run_dir} were trained on arrays made with different "
                            "feature settings; one served spectrogram cannot feed both")


def waveform_capable(members: Sequence) -> bool:
    """True when every member takes full-length features (beat tracking is outside the graph)."""
    return not any(m.data.beat for m in members)


def export_ensemble(members: Sequence, models: Sequence, name: str, *, method: str = "vote",
                    root: str | Path = "exported_models", metrics: dict | None = None) -> Path:
    """Writes `root/name/<next version>/` atomically and returns that folder.

    Args:
        members: the ensemble's members (`mgr_tf.analysis.ensemble.Member`).
        models: their trained Keras models, in the same order.
        name: model name (TF Serving's `model_name`).
        method: the rule behind the `genre` output (vote, mean or confidence).
        root: export root folder.
        metrics: numbers written to assets/metrics.json.

    Raises:
        UserError: see `check_exportable`; an export that would hold GPU-only ops.
    """
    check_exportable(members, name)
    decide(method, tf.zeros([1, 1, 2]))  # ValueError naming the rules, before anything is written
    class_names = list(members[0].config["class_names"])
    fcfg = members[0].feature_config
    fused_bands = fcfg.n_mels + fcfg.n_chroma
    waveform = waveform_capable(members)
    def write(tmp: Path) -> None:
        with tf.device("/CPU:0"):
            archive = keras.export.ExportArchive()
            for model in models:
                archive.track(model)
            names = tf.constant(class_names)

            def answer(fused):
                probs = tf.stack([model({INPUT_NAME: derive(m.data.features, fused, m.feature_config)},
                                        training=False)["genre"] for m, model in zip(members, models)])
                out = {"probabilities": tf.reduce_mean(probs, axis=0),
                       "genre": tf.gather(names, decide(method, probs))}
                out.update({f"member_{i}_probabilities": probs[i] for i in range(len(members))})
                return out

            def serve(spectrogram):
                return answer(checked_spectrogram(spectrogram))

            def serve_waveform(waveform):
                return answer(fused_features(checked_waveform(waveform, fcfg.sample_rate), fcfg))

            archive.add_endpoint("serving_default", serve, input_signature=[
                tf.TensorSpec([None, None, fused_bands], tf.float32, name=INPUT_NAME)])
            if waveform:
                archive.add_endpoint("serving_waveform", serve_waveform, input_signature=[
                    tf.TensorSpec([None, None], tf.float32, name="waveform")])
            archive.write_out(str(tmp), verbose=False)

    signatures = ["serving_default"] + (["serving_waveform"] if waveform else [])
    return write_version(Path(root) / name, write, labels=class_names,
                         config=export_config(members, method, name, signatures), metrics=metrics)


def export_config(members: Sequence, method: str, name: str, signatures: Sequence[str]) -> dict:
    """assets/config.json: a fused genre model's keys (for predict) plus the ensemble's members."""
    first = members[0]
    data = {**first.config["data"], "features": "fused", "beat": first.data.beat}
    fcfg = first.feature_config
    return {
        "task": "genre", "class_names": list(first.config["class_names"]),
        "num_bands": fcfg.n_mels + fcfg.n_chroma, "data": data, "features": to_dict(fcfg),
        "feature_type": {"name": "fused", "bands": fcfg.n_mels + fcfg.n_chroma,
                         "description": "the fused array; each member derives its own features"},
        "export_name": name, "signatures": list(signatures),
        "ensemble": {"method": method, "outputs": ["probabilities", "genre"] +
                     [f"member_{i}_probabilities" for i in range(len(members))],
                     "members": [{"run_dir": str(m.run_dir), "label": m.label, "features": m.data.features,
                                  "beat": m.data.beat, "config": m.config} for m in members]},
    }
