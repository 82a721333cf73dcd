"""fma_spectrograms: FMA-derived spectrograms for genre recognition and music-emotion regression.

Reads the four sub-datasets of the layout in the shared reference (section 1) from a manual
folder and writes one TFDS dataset per config. Spectrograms are stored as (time, 140) float32,
variable length: rows 0..127 of the on-disk (bands, time) arrays are log-mel, 128..139 chroma.

A split without a label file (the multitask test labels were withheld in the original release)
is still written: its examples carry `labelled = False` and the label sentinel -1 (genre) or
-1.0 (each emotion), so consumers can predict on it but must not score it.

The `<kind>_full_<encoder>` configs (e.g. `genre_full_musicnn`) add the encoder input that
`mgr_tf.ingest --encoder` stored beside each full sample (`<id>.<encoder>.npy`) as a second tensor
under the encoder's name: (time, bands) float32 (musicnn: 96 bands at 62.5 frames/s).

`dummy_data/` (the test fixture, also a manual folder) was made with the project's synthesiser:
`generate_corpus(DIR, seed=0, clips=40, duration=2.0, withhold_test_labels=True)` from
`mgr_tf.synth`: one clip per genre in each genre split, 32/8 multitask clips, unlabelled test.
Paths are read with pathlib, so manual folders must be local.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow_datasets as tfds

from mgr_tf.core.config import FUSED_BANDS, FeatureConfig
from mgr_tf.core.published import EMOTIONS, GENRES_20
from mgr_tf.data import layout
from mgr_tf.data import readers as mgr_io
from mgr_tf.models import encoder_inputs, get_feature_type  # with the pretrained families' stored inputs

logger = logging.getLogger(__name__)

UNLABELLED_GENRE = -1
UNLABELLED_EMOTION = -1.0


@dataclasses.dataclass
class FmaConfig(tfds.core.BuilderConfig):
    """A sub-dataset of the layout: the kind of labels it carries and whether it is beat-synchronous.

    Args:
        label_kind: "genre" (a ClassLabel over the genre vocabulary) or "emotion" (one float per regression
            target: the builder's `targets`, valence, energy and danceability in the published data).
        beat: read the beat-synchronous copy (T ~ 40..130 frames instead of ~1293).
        encoder: also read this stored encoder input (a stored feature type such as musicnn); "" = none.
    """

    label_kind: str = "genre"
    beat: bool = False
    encoder: str = ""

    @property
    def sub_dataset(self) -> str:
        return layout.sub_datasets(self.label_kind)[self.beat]


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for the FMA spectrogram sub-datasets (manual download).

    Args:
        skip_bad: skip bad examples (bad label lines, missing or corrupt sample files) instead of
            failing; each is logged with its reason and listed in `self.skipped`.
        genre_names: the genre vocabulary of the genre configs (FMA's 20 unless the root's genres.txt says).
        targets: the regression targets of the emotion configs (the columns of the root's label CSV).
        frame_cap: the most frames a stored array may have (longer ones are bad examples).
        size_cap_mb: the most MiB of array data a stored array may hold (decompressed).
        **kwargs: passed to `tfds.core.GeneratorBasedBuilder` (data_dir, config, ...).
    """

    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES = {
        "1.3.0": "Any regression targets (the columns of the label CSV; valence, energy, danceability published).",
        "1.2.0": "Configs with a stored encoder input beside the spectrograms (genre_full_musicnn, ...).",
        "1.1.0": "Any genre vocabulary (a sub-dataset's genres.txt; FMA's 20 names otherwise).",
        "1.0.0": "Initial release: four configs, unlabelled test splits flagged by `labelled`.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Place the dataset root (often called `data/`) in `manual_dir/`, or pass it as
    `--manual_dir ROOT`. It must hold the four sub-datasets:
      fma_genre_spectrograms/{train,test}/<id>.fused.full.npy[.gz] + {train,test}_labels.txt
      fma_genre_spectrograms_beat/  (same, beat-synchronous)
      multitask_dataset/{train,test}/<id>.fused.full.npy[.gz] + train_labels.txt [+ test_labels.txt]
      multitask_dataset_beat/       (same, beat-synchronous)
    Genre label files: a header line, then `<id>.fused.full.npy.gz<TAB><Genre>`.
    Emotion label files: CSV with header `Id,valence,energy,danceability`, values in [0, 1].
    A small synthetic corpus in this layout: `python -m mgr_tf.synth --out ROOT`.
    """
    BUILDER_CONFIGS = [
        FmaConfig(name="genre_full", description="20-genre clips, full 30 s spectrograms.",
                  label_kind="genre", beat=False),
        FmaConfig(name="genre_beat", description="20-genre clips, beat-synchronous spectrograms.",
                  label_kind="genre", beat=True),
        FmaConfig(name="multitask_full", description="Valence/energy/danceability, full spectrograms.",
                  label_kind="emotion", beat=False),
        FmaConfig(name="multitask_beat", description="Valence/energy/danceability, beat-synchronous.",
                  label_kind="emotion", beat=True),
    ] + [
        FmaConfig(name=f"{kind}_full_{encoder}", label_kind=label_kind, encoder=encoder,
                  description=f"{kind} full spectrograms with the stored {encoder} encoder input.")
        for encoder in encoder_inputs() for kind, label_kind in (("genre", "genre"), ("multitask", "emotion"))
    ]

    def __init__(self, *, skip_bad: bool = False, genre_names: tuple[str, ...] = GENRES_20,
                 targets: tuple[str, ...] = EMOTIONS, frame_cap: int = layout.DEFAULT_FRAME_CAP,
                 size_cap_mb: float = layout.DEFAULT_SIZE_CAP_MB, **kwargs):
        self.skip_bad = skip_bad
        self.caps = {"frame_cap": frame_cap, "size_cap_mb": size_cap_mb}
        self.genre_names = tuple(genre_names)
        self.targets = tuple(targets)
        self.skipped: list[mgr_io.Skipped] = []
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "spectrogram": tfds.features.Tensor(shape=(None, FUSED_BANDS), dtype=np.float32),
            "track_id": tfds.features.Text(),
            "labelled": tfds.features.Scalar(dtype=np.bool_),
        }
        encoder = self.builder_config.encoder
        if encoder:
            bands = get_feature_type(encoder).bands(FeatureConfig())
            features[encoder] = tfds.features.Tensor(shape=(None, bands), dtype=np.float32)
        features.update(self._label_features()[self.builder_config.label_kind])
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
            homepage="https://github.com/mdeff/fma",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = dl_manager.manual_dir
        sub = self.builder_config.sub_dataset
        if self.builder_config.label_kind == "emotion":
            stored = mgr_io.regression_targets(root, sub)
            if stored != self.targets:  # the record's keys are fixed by _info, before the manual folder is known
                raise ValueError(f"{root / sub}: its label files name the targets {list(stored)}; this builder was "
                                 f"made for {list(self.targets)} (Builder(targets=...); the tfds command line builds "
                                 "the published valence, energy, danceability)")
        self.skipped = []
        listings = {}
        for split in mgr_io.SPLITS:
            listing = mgr_io.list_split(root, sub, split, skip_bad=self.skip_bad)
            self.skipped.extend(listing.skipped)
            listings[split] = listing
        # TFDS writes no empty split: a root with every clip in train has no test split.
        return {split: self._generate_examples(listing, root) for split, listing in listings.items()
                if listing.examples}

    def _generate_examples(self, listing: mgr_io.SplitListing, root):
        encoder = self.builder_config.encoder
        bands = get_feature_type(encoder).bands(FeatureConfig()) if encoder else None
        for ex in listing.examples:
            try:
                record = {"spectrogram": mgr_io.load_spectrogram(ex.path, **self.caps).T}
                if encoder:
                    path = mgr_io.encoder_input_path(ex.path, ex.track_id, encoder)
                    mgr_io.check_inside(root, path, f"{encoder} encoder input")
                    record[encoder] = mgr_io.load_spectrogram(path, num_bands=bands, **self.caps).T
            except (ValueError, FileNotFoundError) as exc:
                if not self.skip_bad:
                    raise
                skip = mgr_io.Skipped.from_error(str(ex.path), exc)
                logger.warning("skipping bad example %s", skip)
                self.skipped.append(skip)
                continue
            record.update({"track_id": ex.track_id, "labelled": ex.labelled})
            record.update(self._label_values(ex))
            yield ex.track_id, record

    def _label_features(self) -> dict:
        return {"genre": {"genre": tfds.features.ClassLabel(names=list(self.genre_names))},
                "emotion": {name: tfds.features.Scalar(dtype=np.float32) for name in self.targets}}

    def _label_values(self, ex: mgr_io.Example) -> dict:
        if self.builder_config.label_kind == "genre":
            return {"genre": ex.genre if ex.labelled else UNLABELLED_GENRE}
        return dict(zip(self.targets, ex.targets if ex.labelled else (UNLABELLED_EMOTION,) * len(self.targets)))
