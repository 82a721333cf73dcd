"""The models of the musicnn 0.1.0 wheel: their architectures, options, tag names and signal settings.

J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music audio tagging" (ISMIR
late-breaking demo, 2019); the weights ship in the `musicnn` 0.1.0 wheel (ISC licence). Plain values: no
TensorFlow here, so the family's card and the command lines can read them at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Signal settings of the shipped models (musicnn/configuration.py and each model's config.json).
SAMPLE_RATE = 16000
FFT_SIZE = 512
FFT_HOP = 256
N_MELS = 96
# librosa.time_to_frames(3 s, sr=16000, n_fft=512, hop_length=256) + 1, as the package's extractor.
PATCH_FRAMES = 187
LOG_SCALE = 10000.0

# A 30 s clip at 16 kHz has 1 + 480000 // 256 = 1876 frames, of which the ten whole 187-frame (3 s) patches
# (1870 frames) are kept, as the package's extractor drops an incomplete last patch.
CLIP_FRAMES = 1870

# The feature type of the stored encoder input, and the layers of `--model musicnn` training reads by name.
FEATURES = "musicnn"
ENCODER_LAYER = "musicnn_encoder"
POOL_LAYER = "musicnn_pool"  # ends the frozen part
EMBEDDING_NORM_LAYER = "embedding_norm"

INPUT_NAME = "patch"
TAGS_OUTPUT = "tags"
EMBEDDING_OUTPUT = "embedding"

MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)
"""The 50 MagnaTagATune tags of the MTT_* models, in output order (musicnn/configuration.py)."""

MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
)
"""The 50 Million Song Dataset (last.fm) tags of the MSD_* models, in output order."""


# (pool size, strides) after each of the 5 vgg blocks, as in the package's models.vgg.
VGG_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
# MSD_vgg was trained with another variant (config "model_number": 1): its shipped graph pools 4x1 / 4x1 and
# 1x4 / 1x4 in the first two blocks. The package's models.vgg builds VGG_POOLS for it, which does not match
# its weights; the port follows the graph the weights were trained in.
MSD_VGG_POOLS = (((4, 1), (4, 1)), ((1, 4), (1, 4)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))


@dataclass(frozen=True)
class Architecture:
    """One network family of the package.

    Args:
        embedding: what the embedding is, in the package's feature names.
        graph_embedding: the tensor of the shipped TF1 graph that equals the embedding.
    """

    embedding: str
    graph_embedding: str


ARCHITECTURES: dict[str, Architecture] = {
    "musicnn": Architecture("penultimate (200, batch-normalised dense)", "model/batch_normalization_10/batchnorm/add_1:0"),
    "vgg": Architecture("pool5, flattened (2 x 1 x 128 = 256)", "model/Flatten/flatten/Reshape:0"),
}


@dataclass(frozen=True)
class PretrainedModel:
    """A model shipped in the musicnn wheel: its architecture, options and tag names."""

    architecture: str
    tags: tuple[str, ...]
    options: dict = field(default_factory=dict)


PRETRAINED: dict[str, PretrainedModel] = {
    "MTT_musicnn": PretrainedModel("musicnn", MTT_TAGS, {"midend_filters": 64, "backend_units": 200}),
    "MSD_musicnn": PretrainedModel("musicnn", MSD_TAGS, {"midend_filters": 64, "backend_units": 200}),
    "MTT_vgg": PretrainedModel("vgg", MTT_TAGS, {"filters": 128}),
    "MSD_vgg": PretrainedModel("vgg", MSD_TAGS, {"filters": 128, "pools": MSD_VGG_POOLS}),
}
"""The four models of the musicnn 0.1.0 wheel (MSD_musicnn_big is not in the wheel)."""

GRAPH_INPUT = "model/Placeholder:0"
GRAPH_TAGS = "model/Sigmoid:0"


def get_pretrained(model_name: str) -> PretrainedModel:
    """The `PRETRAINED` entry `model_name`; ValueError naming the known models otherwise."""
    try:
        return PRETRAINED[model_name]
    except KeyError:
        raise ValueError(f"unknown musicnn model {model_name!r}; known: {', '.join(PRETRAINED)}") from None


def tag_names(model_name: str) -> tuple[str, ...]:
    """The 50 tag names of `model_name`, in output order."""
    return get_pretrained(model_name).tags


ENCODER_SEPARATOR = "+"
DEFAULT_ENCODER = "MSD_musicnn+MTT_musicnn"
"""Both musicnn taggers, their embeddings concatenated (400 units): on Emotify's 400 clips and 80- and 40-clip
subsets the pair beat MSD_musicnn alone in log-loss everywhere and in accuracy on 6 of 7 sets (docs/results.md).
MTT_musicnn alone scored as well on those four genres, but MagnaTagATune's 50 tags name few genres (no hip-hop,
blues, jazz, folk or punk), where the Million Song Dataset's are mostly genres: the pair keeps what each knows."""


def encoder_names(value: str) -> list[str]:
    """The encoders of a `--musicnn-encoder` value: model names or .keras files joined by "+" (a value naming an
    existing file is one encoder, "+" in its path or not)."""
    if value and Path(value).is_file():
        return [value]
    names = [name.strip() for name in value.split(ENCODER_SEPARATOR)]
    if not value or not all(names):
        raise ValueError(f"musicnn_encoder: expected model names or .keras files joined by "
                         f"{ENCODER_SEPARATOR!r}, got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"musicnn_encoder: {value!r} names an encoder twice")
    return names
