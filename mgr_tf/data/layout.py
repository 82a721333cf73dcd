"""Writing the dataset layout of the published FMA spectrogram data (shared reference, section 1).

Shared by the synthetic corpus (`mgr_tf.synth`) and the audio converter, so that both write files
that every reader of the real data accepts:

```
<root>/<sub-dataset>/{train,test}/<id>.fused.full.npy[.gz]   float32 (bands, time)
<root>/<sub-dataset>/{train,test}_labels.txt
```

Next to a fused array, `mgr_tf.ingest --encoder NAME` stores a pretrained encoder's input computed from
the same clip as ``<id>.NAME.npy[.gz]`` (bands, time) (e.g. musicnn's 16 kHz 96-band log-mel).

Genre label files have the header ``Id<TAB>Genre`` and name ``<id>.fused.full.npy.gz`` whatever the
stored file is; emotion label files are CSV ``Id,<target>,...``: the published ``Id,valence,energy,danceability``
or any other regression targets, named by the header (values in [0, 1]).
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mgr_tf.core.config import DEFAULT_FRAME_CAP, DEFAULT_SIZE_CAP_MB, to_dict  # noqa: F401 (re-exported)
from mgr_tf.core.io import write_json, write_text
from mgr_tf.core.published import EMOTIONS

GENRE_FULL = "fma_genre_spectrograms"
GENRE_BEAT = "fma_genre_spectrograms_beat"
MULTITASK_FULL = "multitask_dataset"
MULTITASK_BEAT = "multitask_dataset_beat"
GENRE_SUB_DATASETS: tuple[str, str] = (GENRE_FULL, GENRE_BEAT)
EMOTION_SUB_DATASETS: tuple[str, str] = (MULTITASK_FULL, MULTITASK_BEAT)
SUB_DATASETS: tuple[str, ...] = GENRE_SUB_DATASETS + EMOTION_SUB_DATASETS


LABEL_KINDS: dict[str, tuple[str, str]] = {"genre": GENRE_SUB_DATASETS, "emotion": EMOTION_SUB_DATASETS}


def sub_datasets(label_kind: str) -> tuple[str, str]:
    """(full, beat) sub-dataset folder names holding one kind of labels.

    Args:
        label_kind: "genre" (genre label files) or "emotion" (the CSV of regression targets: valence, energy,
            danceability in the published data); a task's `label_kind`.
    """
    return LABEL_KINDS[label_kind]
SPLITS: tuple[str, ...] = ("train", "test")

SAMPLE_SUFFIX = ".fused.full.npy"
FEATURES_FILE = "features.json"  # the FeatureConfig the root's arrays were made with
VOCABULARY_FILE = "genres.txt"  # a genre sub-dataset's own genre names, one a line, in class-index order
TARGET_RANGES_FILE = "targets.json"  # an emotion sub-dataset's target ranges mapped to [0, 1] by ingest
# The metadata files a root's records depend on besides its label files and samples: in the fingerprint.
ROOT_METADATA = (FEATURES_FILE,)
SUB_DATASET_METADATA = (VOCABULARY_FILE, TARGET_RANGES_FILE)

# DEFAULT_FRAME_CAP, DEFAULT_SIZE_CAP_MB (from the configs): caps on one stored array, checked from its .npy header
# before its data is read or decompressed, so a small hostile file (a gzip "bomb") cannot take the memory and time
# of a huge one; the flags --frame-cap and --size-cap-mb raise them.
# No feature type stores values this large (log-mel and MFCC are in dB, chroma in [0, 1], waveforms in [-1, 1]):
# a larger one is garbage (it overflows the normalisation), refused by the readers and the serving signatures.
MAX_ABS_VALUE = 1e6
# Characters a genre name cannot hold: tab and line breaks of any kind (a label file is split into lines and
# fields by them) and other control characters.
_BAD_NAME_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_genre_name(name: str, where: str) -> str:
    """`name` if it can name a genre in a label file and `genres.txt`, else ValueError naming `where`.

    One rule for the writers (ingest, the synthetic corpus) and the readers: a name that one writes the other reads.

    Args:
        name: the genre name (already stripped of surrounding spaces by a reader).
        where: what the message names first (a file and line).
    """
    if not name.strip():
        raise ValueError(f"{where}: blank genre name")
    bad = _BAD_NAME_CHARACTERS.search(name)
    if bad:
        raise ValueError(f"{where}: genre name {name!r} holds the control or line-break character "
                         f"U+{ord(bad.group()):04X}; rename the genre")
    return name
GENRE_HEADER = "Id\tGenre"
EMOTION_ID = "Id"
# Names a regression target may not take: the other keys of a dataset record, and the model's input.
# Names a target cannot take: label-file and record columns, and the keys of a prediction (predict --json).
RESERVED_TARGET_NAMES = ("Id", "id", "track_id", "labelled", "spectrogram", "genre", "path", "split", "input",
                         "windows", "probabilities", "tags", "error", "model", "task")
TARGET_NAME = r"[A-Za-z_][A-Za-z0-9_]*"  # a target names a model output, a record key and a serving output


def check_target_names(names: Sequence[str], where: str) -> tuple[str, ...]:
    """`names` if they can name regression targets (plain names, none reserved or repeated), else ValueError.

    Args:
        names: the target names (e.g. the columns of a label file after its id column).
        where: what the message names first (a file and line).
    """
    if not names:
        raise ValueError(f"{where}: no regression targets (expected columns after the id column)")
    for name in names:
        if not re.fullmatch(TARGET_NAME, name):
            raise ValueError(f"{where}: target name {name!r} is not a plain name (letters, digits and _, not first a "
                             f"digit); rename the column")
        if name in RESERVED_TARGET_NAMES:
            raise ValueError(f"{where}: target name {name!r} is reserved ({', '.join(RESERVED_TARGET_NAMES)})")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ValueError(f"{where}: target {repeated[0]!r} is named twice")
    return tuple(names)


def sample_name(track_id: str | int, gz: bool = True) -> str:
    """File name of one sample: ``<id>.fused.full.npy`` or ``<id>.fused.full.npy.gz``.

    Args:
        track_id: the clip's id.
        gz: gzip-compressed name.
    """
    return f"{track_id}{SAMPLE_SUFFIX}" + (".gz" if gz else "")


def labels_name(split: str) -> str:
    """Label file name of a split (``train_labels.txt`` / ``test_labels.txt``).

    Args:
        split: "train" or "test".
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return f"{split}_labels.txt"


def npy_bytes(array: np.ndarray) -> bytes:
    """The bytes of ``np.save(array)`` (float32, C order)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def encoder_sample_name(track_id: str | int, encoder: str, gz: bool = True) -> str:
    """File name of an encoder input stored beside a sample: ``<id>.<encoder>.npy[.gz]``.

    Args:
        track_id: the clip's id.
        encoder: the encoder input's name (a stored feature type, e.g. musicnn).
        gz: gzip-compressed name.
    """
    return f"{track_id}.{encoder}.npy" + (".gz" if gz else "")


def write_sample(directory: str | Path, track_id: str | int, array_bands_time: np.ndarray,
                 gz: bool, encoder: str | None = None) -> Path:
    """Writes one (bands, time) array as ``<id>.fused.full.npy`` or its gzip ``.npy.gz``.

    The gzip header carries no time stamp or file name, so equal arrays give byte-identical files.

    Args:
        directory: split folder (created if missing).
        track_id: the clip's id.
        array_bands_time: float array (bands, time); stored as float32.
        gz: write the gzip-compressed variant.
        encoder: write an encoder input (``<id>.<encoder>.npy``) instead of the fused sample.

    Returns:
        The path written.
    """
    array = np.asarray(array_bands_time)
    if array.ndim != 2:
        raise ValueError(f"sample {track_id}: expected a (bands, time) array, got shape {array.shape}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (encoder_sample_name(track_id, encoder, gz) if encoder else sample_name(track_id, gz))
    data = npy_bytes(array)
    if gz:
        # Level 1: float spectrograms barely compress, and higher levels only cost time.
        data = gzip.compress(data, compresslevel=1, mtime=0)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def write_genre_labels(path: str | Path, rows: Iterable[tuple[str | int, str]]) -> Path:
    """Writes a genre label file: ``Id<TAB>Genre`` header, then ``<id>.fused.full.npy.gz<TAB><Genre>``.

    Args:
        path: the label file (parent folders created).
        rows: (track id, genre name) pairs.
    """
    lines = [GENRE_HEADER]
    for track_id, genre in rows:
        check_genre_name(str(genre), str(path))
        lines.append(f"{sample_name(track_id, gz=True)}\t{genre}")
    return _write_lines(path, lines)


def write_emotion_labels(path: str | Path, rows: Iterable[tuple], targets: Sequence[str] = EMOTIONS) -> Path:
    """Writes a regression label CSV: ``Id,<target>,...`` header, then one row per clip.

    Args:
        path: the label file (parent folders created).
        rows: (track id, value, ...) tuples, one value per target.
        targets: the target names, in column order (the published valence, energy, danceability by default).
    """
    targets = check_target_names(tuple(targets), str(path))
    lines = [",".join((EMOTION_ID, *targets))]
    for track_id, *values in rows:
        if len(values) != len(targets):
            raise ValueError(f"{path}: row for {track_id} needs {len(targets)} values, got {len(values)}")
        lines.append(",".join([str(track_id)] + [f"{float(v):.6f}" for v in values]))
    return _write_lines(path, lines)


def _write_lines(path: str | Path, lines: Sequence[str]) -> Path:
    write_text(path, "\n".join(lines) + "\n")  # atomic: a killed run never leaves half a label file
    return Path(path)


def write_feature_config(root: str | Path, feature_config) -> Path:
    """Records the FeatureConfig a root's arrays were made with as `ROOT/features.json`.

    Args:
        root: dataset root.
        feature_config: a `mgr_tf.core.config.FeatureConfig`.
    """
    path = Path(root) / FEATURES_FILE
    write_json(path, to_dict(feature_config))
    return path
