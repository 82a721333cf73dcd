"""A task's model on a backbone: `build_model`, transfer to another task's heads, loading trained models.

`build_model` is the one entry point: windows -> gain -> normalisation -> SpecAugment -> the family's backbone ->
window mean -> an `embedding` marker layer -> the task's heads. The task is passed in (a `mgr_tf.tasks.Task`: its
`name` and `heads`), so models never import tasks. `transfer_model` puts another task's heads on a trained
model's backbone; `set_backbone_trainable` freezes or unfreezes it for the frozen-then-fine-tune schedule.
"""

from __future__ import annotations

from pathlib import Path

import keras

from mgr_tf.core.config import PRECISIONS, ModelConfig
from mgr_tf.models.layers import RandomGain, SpecAugment, SpectrogramNormalization, SplitWindows, WindowMean
from mgr_tf.models.registry import get_backbone, resolved

INPUT_NAME = "spectrogram"
NORM_LAYER = "normalization"
EMBEDDING_LAYER = "embedding"
HEAD_PREFIX = "head_"


def build_model(config: ModelConfig, task, *, num_bands: int, frames: int, num_classes: int = 10,
                norm_mean=None, norm_std=None, class_names=None, window_hop: int | None = None,
                db_bands: int = 0) -> keras.Model:
    """Builds the functional model for one task.

    Args:
        config: the architecture (`mgr_tf.models.model_config`).
        task: the task whose heads go on top (a `mgr_tf.tasks.Task`).
        num_bands: bands per frame (140 fused, 128 mel, 12 chroma, ...).
        frames: the training length; fixed-length backbones pad (zeros, at the end) or centre-crop to it
            in-graph, variable-length ones accept any length.
        num_classes: classes of a classification task when `class_names` is not given.
        norm_mean: per-band mean of the training split, stored in the model; None = no shift.
        norm_std: per-band standard deviation of the training split; None = no scaling.
        class_names: class names stored in the classification output layer (see `class_names_of`).
        window_hop: multi-window model: inputs of any length are cut into windows of `frames` frames every
            `window_hop` frames, and the backbone's embeddings are averaged over the windows in the graph
            (patch training). None = one pass over the (padded / cropped) input.
        db_bands: the leading bands of the input that are in dB (log-mel), for `config.gain_db`.

    Returns:
        A model with input "spectrogram" (batch, time, num_bands) of raw values and a dict of outputs
        keyed by the task's output names.
    """
    config = resolved(config)
    backbone = get_backbone(config.family)
    inputs = keras.Input(shape=(None, num_bands), name=INPUT_NAME)
    x = inputs
    if window_hop:
        x, weights = SplitWindows(frames, window_hop, name="windows")(x)
    if config.gain_db and db_bands:
        x = RandomGain(config.gain_db, db_bands, name="random_gain")(x)
    if not backbone.normalize:  # a pretrained encoder takes its own input scale
        norm_mean = norm_std = None
    x = SpectrogramNormalization(num_bands, norm_mean, norm_std, name=NORM_LAYER)(x)
    if config.time_masks or config.freq_masks:
        x = SpecAugment(config.time_masks, config.time_mask_width, config.freq_masks, config.freq_mask_width,
                        name="spec_augment")(x)
    features = backbone.build(config, x, frames=frames)
    if window_hop:
        features = WindowMean(name="window_mean")([features, weights])
    features = keras.layers.Identity(name=EMBEDDING_LAYER)(features)
    if class_names:
        num_classes = len(class_names)
    outputs = task.heads(features, config, num_classes=num_classes, class_names=class_names)
    # Dict inputs: dataset elements are ({"spectrogram": x}, targets), so the model takes that dict as is.
    model = keras.Model({INPUT_NAME: inputs}, outputs, name=f"{config.family}_{task.name}")
    if backbone.after_build:
        backbone.after_build(model, config)
    return model


def _is_backbone_layer(layer, output_names=()) -> bool:
    return not (layer.name.startswith(HEAD_PREFIX) or layer.name in output_names
                or isinstance(layer, keras.layers.InputLayer))


def _output_keys(model: keras.Model) -> tuple[str, ...]:
    outputs = model.output
    return tuple(outputs) if isinstance(outputs, dict) else tuple(model.output_names)


def transfer_model(genre_model: keras.Model, task, config: ModelConfig) -> keras.Model:
    """An emotion (or multitask) model initialised from a trained genre model's backbone.

    The genre model is cloned, so training the new model leaves it untouched; the normalisation
    statistics and every backbone weight are copied, and new heads are added for `task`.

    Args:
        genre_model: a model built by `build_model(..., task="genre")` (or loaded from its .keras file).
        task: the new task (a `mgr_tf.tasks.Task`; not a transfer source itself).
        config: supplies the new heads' dropout and l2 (the backbone is the genre model's).

    Raises:
        ValueError: if `genre_model` is not a genre model of this package, or task is genre.
    """
    keys = _output_keys(genre_model)
    layer_names = {layer.name for layer in genre_model.layers}
    if keys != ("genre",) or EMBEDDING_LAYER not in layer_names or NORM_LAYER not in layer_names:
        raise ValueError(f"transfer_model needs a genre model from mgr_tf.models.build_model (one 'genre' output, "
                         f"an '{EMBEDDING_LAYER}' layer); got model {genre_model.name!r} with outputs {list(keys)}")
    if task.transfer_source:
        raise ValueError(f"transfer_model builds a model for another task; task {task.name!r} is the source task")
    clone = keras.models.clone_model(genre_model)
    clone.set_weights(genre_model.get_weights())
    features = clone.get_layer(EMBEDDING_LAYER).output
    outputs = task.heads(features, config)
    # The source model's name says its family ("cnn_genre"); the new one is named after it.
    return keras.Model(clone.input, outputs, name=f"{genre_model.name}_to_{task.name}")


def set_backbone_trainable(model: keras.Model, trainable: bool) -> None:
    """Freezes (False) or unfreezes (True) every layer except the heads.

    Frozen BatchNormalization layers also switch to inference mode (Keras 3 semantics), which is what
    fine-tuning wants. The batch normalisation of a nested model (a pretrained encoder such as musicnn) stays
    frozen when the rest is unfrozen: its statistics come from far more music than a fine-tuning set holds.
    Recompile the model after calling this.

    Args:
        model: a model from `build_model` or `transfer_model`.
        trainable: the new trainable state of the backbone.
    """
    for layer in model.layers:
        if _is_backbone_layer(layer, _output_keys(model)) and layer.name != NORM_LAYER:
            layer.trainable = trainable
            if trainable and isinstance(layer, keras.Model):
                for inner in nested_layers(layer):
                    if isinstance(inner, keras.layers.BatchNormalization):
                        inner.trainable = False


def nested_layers(model: keras.Model):
    """Every layer of `model`, and of the models nested in it, depth first."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from nested_layers(layer)


def load_keras_model(path: str | Path) -> keras.Model:
    """A trained model from a `.keras` file or a run folder holding `model.keras`.

    Raises:
        FileNotFoundError: nothing there.
        ValueError: the file cannot be loaded as a model of this package (one line naming it).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained model here (expected a .keras file or a run folder with "
                                "model.keras)")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # corrupt or foreign files raise many types
        raise ValueError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None


# Keras dtype policy of each precision in PRECISIONS.
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def at_precision(model: keras.Model, precision: str) -> keras.Model:
    """A functional model computing in `precision`, with the same weights, inputs, outputs and name.

    float32 returns `model` itself (bit for bit what it was). bfloat16 rebuilds every layer under Keras's
    ``mixed_bfloat16`` policy (bfloat16 compute, float32 variables) except the layers that produce the model's
    outputs, which stay float32, so callers get float32 tensors either way.

    Args:
        model: a functional Keras model.
        precision: one of `PRECISIONS`.

    Raises:
        ValueError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return model
    output_layers = {id(tensor._keras_history.operation) for tensor in model.outputs}

    def rebuilt(layer):
        config = layer.get_config()
        if id(layer) not in output_layers:
            config["dtype"] = _POLICIES[precision]
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=rebuilt)
    clone.set_weights(model.get_weights())
    clone.trainable = model.trainable
    return keras.Model(clone.input, clone.output, name=model.name)


def class_names_of(model: keras.Model) -> list[str] | None:
    """The genre names stored in a genre model's output layer (None if none were given).

    Args:
        model: a genre model.
    """
    try:
        return model.get_layer("genre").labels
    except (ValueError, AttributeError):
        return None


def load_backbone_weights(model: keras.Model, path: str | Path) -> int:
    """Copies backbone weights from a local `.keras` model or `.weights.h5` file into `model`.

    Layers are matched by name; a layer is copied only when all of its weight shapes match (e.g. a
    position embedding for another input length is left as initialised). Nothing is downloaded.

    Args:
        model: the model to initialise.
        path: a `.keras` file (any model of this package) or a `.weights.h5` file saved by
            `save_weights` from a model of the same architecture and task (loaded whole).

    Returns:
        The number of layers copied.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file has another format or no layer matched.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights file not found")
    if path.name.endswith(".weights.h5"):
        model.load_weights(str(path))
        return sum(1 for layer in model.layers if layer.weights)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: expected a .keras or .weights.h5 file")
    source = keras.models.load_model(str(path), compile=False)
    source_layers = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in model.layers:
        other = source_layers.get(layer.name)
        if other is None or not _is_backbone_layer(layer, _output_keys(model)) or not layer.weights:
            continue
        if [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in other.weights]:
            layer.set_weights(other.get_weights())
            copied += 1
    if not copied:
        raise ValueError(f"{path}: no backbone layer matches the model by name and weight shapes")
    return copied
