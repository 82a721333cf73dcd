"""Models: the backbone families (LSTM, CNN, AST, the summary baseline, the pretrained musicnn encoder).

This module registers each family with one line and imports no TensorFlow, so the command-line parsers
can list the families and their flags at once. The Keras code is in each family's builder, in `layers`
and in `build` (`build_model`: a task's model on a backbone), loaded when a model is built.

A pretrained family registers the encoder input it stores per clip as a feature type; `FEATURE_TYPES`,
`get_feature_type` and `encoder_inputs` here are the feature-type registry with those included, which is
what the data layer, ingest and the command lines consult.
"""

from __future__ import annotations

from mgr_tf.features.types import FEATURE_TYPES, encoder_inputs, get_feature_type
from mgr_tf.models import ast, cnn, lstm, musicnn, summary
from mgr_tf.models.registry import (
                                    BACKBONES,
                                    Backbone,
                                    Converter,
                                    Encoder,
                                    Tagger,
                                    get_backbone,
                                    model_config,
                                    model_config_from_dict,
                                    register_backbone,
                                    resolved,
)

# The registry lines: one per family.
register_backbone(lstm.BACKBONE)
register_backbone(cnn.BACKBONE)
register_backbone(ast.BACKBONE)
register_backbone(summary.BACKBONE)
register_backbone(musicnn.BACKBONE)

__all__ = ["BACKBONES", "FEATURE_TYPES", "Backbone", "Converter", "Encoder", "Tagger", "encoder_inputs",
           "get_backbone", "get_feature_type", "model_config", "model_config_from_dict", "register_backbone",
           "resolved"]
