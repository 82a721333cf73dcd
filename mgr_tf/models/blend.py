"""A genre model and a statistics model trained beside it, served as one model: their probabilities averaged.

`blend_model(model, partner, weight, ...)` takes the stored fused arrays (time, mel + chroma), the input of the
summary family, derives the model's own feature type from them in the graph (`DeriveFeatures`: the mel rows,
MFCCs, ...; nothing for fused) and answers `genre` = weight * the model's probabilities + (1 - weight) * the
partner's. The partner is a summary-family model (the wide statistics of `mgr_tf.training.baseline.wide_plan`).
The weight is chosen by `mgr_tf.training.blend`. A weighted average of two calibrated probability vectors is a
probability vector, so the export, TF Serving and `predict` treat the pair like any genre model.

Why late fusion rather than one network with a wide branch: trained jointly, the statistics branch of a small
CNN was no better than the baseline alone on 400 real clips and worse on 80 (docs/results.md); averaging the two
fitted models, each at its own optimum, beat both (a stacked ensemble in the sense of Wolpert, "Stacked
generalization", Neural Networks 1992, with one weight fitted on held-out clips).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from mgr_tf.core.config import FeatureConfig, from_dict, to_dict
from mgr_tf.features.types import derive
from mgr_tf.models.build import INPUT_NAME

OUTPUT = "genre"
BLEND_FILE = "blend.json"  # in a run folder: the run serves `blend_model` with this file's weight


def read_blend(run_dir: str | Path) -> dict | None:
    """A run folder's blend.json (written by `mgr_tf.training.blend`), or None for a run serving its model alone."""
    path = Path(run_dir) / BLEND_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@keras.saving.register_keras_serializable(package="mgr_tf")
class DeriveFeatures(keras.layers.Layer):
    """A feature type (`mgr_tf.features.types`) computed from fused (batch, time, mel + chroma) arrays."""

    def __init__(self, features: str, feature_config: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.feature_config = dict(feature_config or to_dict(FeatureConfig()))
        self._cfg = from_dict(FeatureConfig, self.feature_config)

    def call(self, fused):
        return derive(self.features, fused, self._cfg)

    def get_config(self):
        return {**super().get_config(), "features": self.features, "feature_config": self.feature_config}


def fused_bands(feature_config: FeatureConfig) -> int:
    """Bands of the fused arrays: the blend's input."""
    return feature_config.n_mels + feature_config.n_chroma


def blend_model(model: keras.Model, partner: keras.Model, weight: float, *, features: str,
                feature_config: FeatureConfig) -> keras.Model:
    """One functional model: fused arrays -> weight * model + (1 - weight) * partner probabilities.

    Args:
        model: a trained genre model taking `features` (output "genre").
        partner: a summary-family model trained beside it, taking the fused arrays (output "genre").
        weight: the model's share, in [0, 1].
        features: the model's feature type.
        feature_config: the settings the arrays were made with.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must lie in [0, 1], got {weight}")
    fused = keras.Input(shape=(None, fused_bands(feature_config)), name=INPUT_NAME)
    own = DeriveFeatures(features, to_dict(feature_config), name="derive_" + features)(fused)
    p_model = model({INPUT_NAME: own})[OUTPUT]
    p_partner = partner({INPUT_NAME: fused})[OUTPUT]
    mixed = keras.layers.Add(name=OUTPUT)([keras.layers.Rescaling(weight, name="model_share")(p_model),
                                           keras.layers.Rescaling(1.0 - weight, name="partner_share")(p_partner)])
    return keras.Model({INPUT_NAME: fused}, {OUTPUT: mixed}, name="blend")
