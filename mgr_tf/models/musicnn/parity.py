"""Parity with the original: the shipped TF1 `.meta` graph of a musicnn model, run as it was trained.

The graph still runs on TensorFlow 2.x in a `tf.compat.v1` session once its training-only nodes are removed
(`inference_graph_def`); `original_graph_outputs` feeds it patches so the Keras port's tags and embeddings can
be compared with the graph the weights were trained in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.models.musicnn.convert import (
    _OPTIMIZER_NODE,
    _checkpoint_stem,
    _index_file,
    _load_reader,
    checkpoint_prefix,
)
from mgr_tf.models.musicnn.presets import ARCHITECTURES, GRAPH_INPUT, GRAPH_TAGS, get_pretrained


def inference_graph_def(meta_graph_def):
    """The shipped GraphDef without its training-only part, ready for `tf.compat.v1.import_graph_def`.

    Removes everything under ``gradients/``, the optimiser's nodes (train op ``Adam``, slots, beta powers)
    and every node that depends on a removed one (data or control input: the Saver, the update ops), and
    the stale ``_output_shapes`` attributes and device pins, and gives unseeded random ops a seed.
    """
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
