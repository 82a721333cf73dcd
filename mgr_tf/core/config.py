"""The configuration dataclasses: plain values that check their own ranges, and their JSON form.

Feature parameters live in exactly one object (`FeatureConfig`) so that the dataset converter, the synthetic
corpus, the data pipeline and the serving signature all compute the same features. Every config is a frozen
dataclass whose `__post_init__` checks only its own values; whether a named task, feature type or backbone
exists is decided above this layer, where the registries are (`mgr_tf.data.spec.resolve`,
`mgr_tf.models.model_config`). `to_dict` / `from_dict` give the `config.json` written next to every run and
export.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# Rows 0..127 of a stored (fused) array are log-mel, rows 128..139 chroma (reference section 1); the
# feature types derived from it are registered in mgr_tf.features.types.
FUSED_BANDS = 140
FULL_FRAMES = 1293  # padding length used by published code on the full spectrograms
BEAT_FRAMES = 129  # ... and on the beat-synchronous ones
# Caps on one stored array (mgr_tf.data.readers.load_spectrogram), checked from its header before its data is read:
# 100 000 frames is 39 minutes at the published 43 frames/s (a dataset clip has about 1 300).
DEFAULT_FRAME_CAP = 100_000
DEFAULT_SIZE_CAP_MB = 256
SPEARMAN_METHODS = ("pairwise", "permutahedron")
# How `TrainConfig.distribute` spreads training over devices and machines (mgr_tf.training.distributed).
DISTRIBUTE_MODES = ("none", "mirrored", "multiworker", "auto")
# Compute precisions of a pretrained encoder (`mgr_tf.models.build.at_precision`): float32, or bfloat16 compute
# with float32 weights and outputs (Keras's mixed_bfloat16 policy).
PRECISIONS = ("float32", "bfloat16")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class FeatureConfig:
    """Spectrogram settings of the published data (librosa defaults where unstated).

    Args:
        sample_rate: audio rate in Hz; audio is resampled to it, mono.
        n_fft: STFT window length (Hann window, centred frames, zero padding).
        hop_length: STFT hop in samples.
        n_mels: mel bands (Slaney mel scale and area normalisation, as librosa).
        n_chroma: chroma bins, C first.
        fmin: lowest mel frequency in Hz.
        fmax: highest mel frequency in Hz; None = sample_rate / 2.
        top_db: dynamic range kept by `power_to_db` (ref = 1.0, amin = 1e-10).
        clip_seconds: clip length that a dataset example covers.
        n_mfcc: MFCC coefficients of the mfcc feature type (computed from the log-mel rows).
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    n_chroma: int = 12
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    clip_seconds: float = 30.0
    n_mfcc: int = 20

    def __post_init__(self):
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "n_chroma", "n_mfcc"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"FeatureConfig: {name} must be a positive integer, "
                                                            f"got {value!r}")
        _check(_finite(self.clip_seconds) and self.clip_seconds > 0,
               f"FeatureConfig: clip_seconds must be positive, got {self.clip_seconds!r}")
        _check(_finite(self.fmin) and self.fmin >= 0, f"FeatureConfig: fmin must be >= 0, got {self.fmin!r}")
        _check(self.fmax is None or (_finite(self.fmax) and self.fmin < self.fmax <= self.sample_rate / 2),
               f"FeatureConfig: fmax must lie in (fmin, sample_rate / 2], got {self.fmax!r}")
        _check(self.n_mfcc <= self.n_mels, f"FeatureConfig: n_mfcc must be between 1 and the {self.n_mels} mel bands, "
                                           f"got {self.n_mfcc}")

    @property
    def num_bands(self) -> int:
        return self.n_mels + self.n_chroma


@dataclass(frozen=True)
class DataConfig:
    """What `mgr_tf.data.make_dataset` reads and how it batches it.

    Args:
        data_dir: dataset root in the layout of the reference (four sub-datasets); None = the
            embedded synthetic corpus, generated on first use.
        task: genre, regression (alias multitask: every regression target of the data, or those of `targets`),
            a registered task (valence, energy, danceability, ...), or the name of one regression target.
        features: the model input (a name in `mgr_tf.features.types`): fused (140), mel (128), chroma (12),
            mfcc, or an encoder input stored by ingest --encoder (musicnn).
        beat: read the beat-synchronous sub-datasets.
        num_genres: 10 (published 20 -> 10 mapping, dropped genres removed) or 20.
        val_fraction: share of the train split held out (stratified, deterministic) for validation.
        seed: seed of the validation split and the shuffle.
        batch_size: examples per batch.
        max_frames: pad/crop length; None = 1293 (full) or 129 (beat), or the feature type's own full-clip
            length (musicnn: 1870).
        variable_length: batch by length with zero padding (for LSTM, which masks all-zero frames)
            instead of pad/crop to max_frames.
        skip_bad: skip bad examples (counted and named in the build summary) instead of failing.
        shuffle_buffer: shuffle buffer size for the train split.
        n_mfcc: MFCC coefficients when features is mfcc.
        cv_folds: cross-validation: pool train and the labelled test split, cut them into this many
            stratified folds (0 = no cross-validation; `python -m mgr_tf.cv` sets it).
        cv_fold: the fold used as the test split.
        patch_frames: train on random crops of this many frames, drawn afresh each epoch; evaluation,
            predict and the SavedModel average the model over the windows of the whole clip (hop = half a
            patch) in the graph. 0 (or None) = train on whole clips; ignored when the clips are not longer
            than a patch (beat-synchronous data).
        mixup: training-only mixup (Zhang et al., ICLR 2018) with a Beta(mixup, mixup) mixing weight per batch:
            each batch is mixed with a shuffled copy of itself and both label sets are scored, weighted by the
            mixing weight (so class labels need no one-hot); 0 = off.
        targets: the regression targets that --task regression (or multitask) predicts, by name (the columns of
            the data's label CSV); empty = all of them.
        train_fraction: the share of the training clips (after the validation split is carved) that trains the
            model, a stratified, seeded subset (learning curves: `python -m mgr_tf.cv --learning-curve`).
        frame_cap: the most frames a stored array may have; a longer one is refused from its header, before its
            data is decompressed (raise it for longer clips).
        size_cap_mb: the most MiB of array data a stored array may hold once decompressed.
    """

    data_dir: str | None = None
    task: str = "genre"
    features: str = "mfcc"
    beat: bool = False
    num_genres: int = 10
    val_fraction: float = 0.15
    seed: int = 0
    batch_size: int = 32
    max_frames: int | None = None
    variable_length: bool = False
    skip_bad: bool = False
    shuffle_buffer: int = 1024
    n_mfcc: int = 20
    cv_folds: int = 0
    cv_fold: int = 0
    patch_frames: int | None = 256
    mixup: float = 0.0
    targets: tuple[str, ...] = ()
    train_fraction: float = 1.0
    frame_cap: int = DEFAULT_FRAME_CAP
    size_cap_mb: float = DEFAULT_SIZE_CAP_MB

    def __post_init__(self):
        _check(_finite(self.train_fraction) and 0.0 < self.train_fraction <= 1.0,
               f"train_fraction must be in (0, 1], got {self.train_fraction}")
        _check(len(set(self.targets)) == len(self.targets), f"targets are named twice: {list(self.targets)}")
        _check(isinstance(self.frame_cap, int) and self.frame_cap >= 1,
               f"frame_cap must be a positive number of frames, got {self.frame_cap}")
        _check(_finite(self.size_cap_mb) and self.size_cap_mb > 0,
               f"size_cap_mb must be a positive number of MiB, got {self.size_cap_mb}")
        _check(self.num_genres in (10, 20), f"num_genres must be 10 or 20, got {self.num_genres}")
        _check(self.patch_frames is None or self.patch_frames >= 0,
               f"patch_frames must be positive (0 = whole clips), got {self.patch_frames}")
        _check(not self.cv_folds or (self.cv_folds >= 2 and 0 <= self.cv_fold < self.cv_folds),
               f"cross-validation needs cv_folds >= 2 and 0 <= cv_fold < cv_folds, got {self.cv_folds} and "
               f"{self.cv_fold}")
        _check(_finite(self.mixup) and self.mixup >= 0, f"mixup must be >= 0 (0 = off), got {self.mixup}")
        _check(_finite(self.val_fraction) and 0.0 <= self.val_fraction < 1.0,
               f"val_fraction must be in [0, 1), got {self.val_fraction}")
        _check(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        _check(self.shuffle_buffer >= 1, f"shuffle_buffer must be at least 1, got {self.shuffle_buffer}")
        _check(self.max_frames is None or self.max_frames >= 1, f"max_frames must be at least 1, got {self.max_frames}")
        _check(self.n_mfcc >= 1, f"n_mfcc must be at least 1, got {self.n_mfcc}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model: the backbone family with its options, and the regularisation.

    Build one with `mgr_tf.models.model_config(family, **options)`, which looks the family up and fills in
    its options; this dataclass only holds the values.

    Args:
        family: backbone family (a name in `mgr_tf.models.BACKBONES`: lstm, cnn, ast, summary, ...).
        dropout: dropout rate before each output head (and inside the AST blocks).
        l2: L2 weight-decay factor on the kernels of dense, convolution and recurrent layers (0 = none).
        gain_db: training-only random gain: a uniform offset in [-gain_db, gain_db] dB on the log-mel bands
            of each example (0 = off).
        time_masks: training-only SpecAugment time masks per example (0 = off).
        time_mask_width: maximum width of a time mask in frames.
        freq_masks: training-only SpecAugment frequency masks per example (0 = off).
        freq_mask_width: maximum width of a frequency mask in bands.
        backbone: the family's options dataclass (its fields read as attributes of this config).
    """

    family: str = "cnn"
    dropout: float = 0.3
    l2: float = 0.0
    gain_db: float = 0.0
    time_masks: int = 0
    time_mask_width: int = 20
    freq_masks: int = 0
    freq_mask_width: int = 16
    backbone: Any = None

    def __post_init__(self):
        _check(_finite(self.dropout) and 0.0 <= self.dropout < 1.0,
               f"ModelConfig: dropout must be in [0, 1), got {self.dropout}")
        _check(_finite(self.l2) and self.l2 >= 0.0, f"ModelConfig: l2 must be >= 0, got {self.l2}")
        _check(_finite(self.gain_db) and min(self.gain_db, self.time_masks, self.time_mask_width, self.freq_masks,
                                             self.freq_mask_width) >= 0,
               "ModelConfig: gain_db, time_masks, time_mask_width, freq_masks and freq_mask_width must be >= 0")

    def to_dict(self) -> dict:
        """Flat JSON form (as in a run's config.json): family, the common fields and the family's options."""
        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "backbone"}
        return {**common, **(to_dict(self.backbone) if self.backbone is not None else {})}

    def __getattr__(self, name):
        # Only called for names that are not fields: the family's options read as config attributes.
        if name.startswith("__"):
            raise AttributeError(name)
        backbone = self.__dict__.get("backbone")
        if backbone is not None and hasattr(backbone, name):
            return getattr(backbone, name)
        raise AttributeError(f"ModelConfig of family {self.__dict__.get('family')!r} has no option {name!r}")


HEADS = ("auto", "convex", "gradient")
MONITORS = ("auto", "metric", "loss")
BLENDS = ("auto", "off")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (any task).

    Args:
        epochs: maximum epochs (early stopping may end sooner); with --init-from, epochs of the frozen phase
            plus the fine-tuning phase.
        learning_rate: Adam learning rate.
        patience: early stopping patience in epochs (best weights are restored).
        lr_patience: epochs without improvement before the learning rate is halved.
        init_from: a trained genre model (.keras file or run folder) whose backbone initialises this model.
        freeze_epochs: with --init-from, epochs with the backbone frozen before fine-tuning.
        finetune_lr_factor: with --init-from, learning-rate factor of the fine-tuning phase.
        overfit_batch: train on a single batch only, to check that the model can memorise it.
        head: how the heads are fitted when what feeds them does not train (a frozen pretrained encoder, the
            summary baseline's statistics): convex solves the L2-regularised logistic regression to its
            optimum on the training and validation clips (no early stopping; `mgr_tf.training.convex`);
            gradient trains them with Adam and early stopping like every other model; auto is convex there,
            except with --learned-weights, and gradient for every other model.
        head_c: the inverse L2 strength C of convex heads (scikit-learn's convention: C * sum of losses +
            1/2 ||W||^2); a target's fixed loss weight multiplies it.
        monitor: what early stopping, the best checkpoint and the learning-rate schedule watch on the
            validation clips, the task's metric (accuracy, or the mean Spearman of the targets) or its loss;
            auto is the loss for a blended run (calibrated probabilities are what the blend weighs), else the
            metric.
        refit: after training, train a fresh model on the training and validation clips together for the
            best epoch's number of epochs, following the same learning rates, and serve it (from-scratch models;
            `mgr_tf.training.runner.refit`); the blend weight is still chosen with the first model on validation.
        blend: auto serves a from-scratch genre model blended with a linear model on every per-band statistic
            (mean, std, min, max, delta_std: a superset of the baseline's mean and std) trained beside it: the
            two probability vectors averaged with the weight of lowest log-loss on the validation clips (0, the
            statistics alone, to 1, the model alone; `mgr_tf.training.blend`); off serves the model alone.
        distribute: none (one process), mirrored (every GPU of this host, tf.distribute.MirroredStrategy), multiworker
            (the workers of TF_CONFIG, tf.distribute.MultiWorkerMirroredStrategy) or auto (multiworker when
            TF_CONFIG names several tasks, else mirrored when there are several GPUs, else none); --batch-size is
            the global batch, split evenly over the replicas (see docs/distributed.md).
    """

    epochs: int = 60
    learning_rate: float = 1e-3
    patience: int = 15
    lr_patience: int = 3
    init_from: str | None = None
    freeze_epochs: int = 4
    finetune_lr_factor: float = 0.1
    overfit_batch: bool = False
    head: str = dataclasses.field(default="auto", metadata={"choices": HEADS})
    head_c: float = 0.03
    monitor: str = dataclasses.field(default="auto", metadata={"choices": MONITORS})
    refit: bool = False
    blend: str = dataclasses.field(default="auto", metadata={"choices": BLENDS})
    distribute: str = dataclasses.field(default="none", metadata={"choices": DISTRIBUTE_MODES})

    def __post_init__(self):
        _check(self.monitor in MONITORS, f"monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        _check(self.blend in BLENDS, f"blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")
        _check(self.head in HEADS, f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        _check(_finite(self.head_c) and self.head_c > 0, f"head_c must be a positive number, got {self.head_c}")
        _check(self.distribute in DISTRIBUTE_MODES,
               f"distribute must be one of {', '.join(DISTRIBUTE_MODES)}, got {self.distribute!r}")
        _check(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _check(_finite(self.learning_rate) and self.learning_rate > 0,
               f"learning rate must be a positive number, got {self.learning_rate}")
        _check(self.patience >= 1, f"patience must be at least 1, got {self.patience}")
        _check(self.lr_patience >= 1, f"lr_patience must be at least 1, got {self.lr_patience}")
        _check(self.freeze_epochs >= 0, f"freeze_epochs must be >= 0, got {self.freeze_epochs}")
        _check(_finite(self.finetune_lr_factor) and self.finetune_lr_factor > 0,
               f"finetune_lr_factor must be a positive number, got {self.finetune_lr_factor}")


@dataclass(frozen=True)
class RegressionConfig:
    """How regression targets are trained: the loss of each target and the weights of several.

    Args:
        spearman_weight: lambda of the regression loss MSE + lambda * (1 - soft Spearman); 0 = MSE alone.
        spearman_method: soft rank used by the Spearman loss: pairwise (TF-Ranking style) or permutahedron
            (Blondel et al. 2020).
        spearman_strength: soft-rank regularisation (temperature / epsilon); smaller = closer to hard ranks.
        loss_weights: fixed multitask weights by target name ({} = all equal; a target not named weighs 1).
        learned_weights: learn the multitask weights (uncertainty weighting) instead of fixing them.
    """

    spearman_weight: float = 1.0
    spearman_method: str = "permutahedron"
    spearman_strength: float = 0.1
    loss_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    learned_weights: bool = False

    def __post_init__(self):
        _check(_finite(self.spearman_weight) and self.spearman_weight >= 0,
               f"spearman weight must be >= 0, got {self.spearman_weight}")
        _check(self.spearman_method in SPEARMAN_METHODS,
               f"spearman method must be pairwise or permutahedron, got {self.spearman_method!r}")
        _check(_finite(self.spearman_strength) and self.spearman_strength > 0,
               f"spearman strength must be > 0, got {self.spearman_strength}")
        _check(isinstance(self.loss_weights, dict) and all(_finite(w) and w >= 0 for w in self.loss_weights.values()),
               f"--loss-weights needs non-negative numbers, got {self.loss_weights}")
        object.__setattr__(self, "loss_weights", {str(k): float(v) for k, v in self.loss_weights.items()})


def to_dict(config: Any) -> dict:
    """A dataclass config (possibly nested) as a JSON-ready dict."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def from_dict(cls: type[T], data: dict) -> T:
    """Builds dataclass `cls` from a dict, rejecting unknown keys with a clear message.

    Lists become tuples where the field's default is a tuple (JSON has no tuples).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    kwargs = {}
    for key, value in data.items():
        default = names[key].default
        if isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: {exc}") from None
