"""The fma_spectrograms TFDS builder: dummy-data builds, the `tfds build` CLI, a non-editable install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets import testing as tfds_testing

from mgr_tf.data.fma_spectrograms import fma_spectrograms_dataset_builder as fma

REPO = Path(__file__).resolve().parents[1]
DUMMY = Path(fma.__file__).parent / "dummy_data"


class GenreBuilderTest(tfds_testing.DatasetBuilderTestCase):
    """Genre configs on dummy_data: one clip per genre in each split."""

    DATASET_CLASS = fma.Builder
    EXAMPLE_DIR = DUMMY
    BUILDER_CONFIG_NAMES_TO_TEST = ["genre_full", "genre_beat"]
    SPLITS = {"train": 20, "test": 20}


class MultitaskBuilderTest(tfds_testing.DatasetBuilderTestCase):
    """Multitask configs on dummy_data, whose test split is unlabelled (no test_labels.txt)."""

    DATASET_CLASS = fma.Builder
    EXAMPLE_DIR = DUMMY
    BUILDER_CONFIG_NAMES_TO_TEST = ["multitask_full", "multitask_beat"]
    SPLITS = {"train": 32, "test": 8}


def test_datasets_folder_is_the_tfds_new_layout():
    folder = REPO / "datasets" / "fma_spectrograms"
    for name in ("fma_spectrograms_dataset_builder.py", "__init__.py", "README.md", "checksums.tsv",
                 "TAGS.txt", "CITATIONS.bib", "dummy_data"):
        assert (folder / name).exists(), name
    assert (folder / "fma_spectrograms_dataset_builder.py").resolve() == Path(fma.__file__).resolve()


def test_unlabelled_split_flags_and_sentinels(tmp_path):
    builder = fma.Builder(config="multitask_beat", data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(DUMMY)))
    test = list(builder.as_dataset(split="test").as_numpy_iterator())
    train = list(builder.as_dataset(split="train").take(3).as_numpy_iterator())
    assert all(not ex["labelled"] and ex["valence"] == -1.0 and ex["danceability"] == -1.0 for ex in test)
    assert all(ex["labelled"] and 0.0 <= ex["energy"] <= 1.0 for ex in train)
    assert test[0]["spectrogram"].shape[1] == 140


def test_skip_bad_records_reasons(tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(DUMMY / "fma_genre_spectrograms_beat", root / "fma_genre_spectrograms_beat")
    victim = sorted((root / "fma_genre_spectrograms_beat" / "train").iterdir())[0]
    victim.write_bytes(b"\x93NUMPY garbage")
    config = tfds.download.DownloadConfig(manual_dir=str(root))
    with pytest.raises(ValueError, match=str(victim.name)):
        fma.Builder(config="genre_beat", data_dir=str(tmp_path / "a")).download_and_prepare(download_config=config)
    builder = fma.Builder(config="genre_beat", data_dir=str(tmp_path / "b"), skip_bad=True)
    builder.download_and_prepare(download_config=config)
    assert builder.info.splits["train"].num_examples == 19
    assert [s.name for s in builder.skipped] == [str(victim)]


@pytest.mark.slow
def test_tfds_build_cli(tiny_corpus, tmp_path):
    data_dir = tmp_path / "tfds"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "tensorflow_datasets.scripts.cli.main", "build",
         "datasets/fma_spectrograms", "--manual_dir", str(tiny_corpus), "--config", "genre_beat",
         "--data_dir", str(data_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((data_dir / "fma_spectrograms" / "genre_beat" / str(fma.Builder.VERSION) / "dataset_info.json").read_text())
    counts = {s["name"]: sum(int(n) for n in s["shardLengths"]) for s in info["splits"]}
    assert counts == {"train": 40, "test": 20}


@pytest.mark.slow
def test_non_editable_install_carries_the_builder(tiny_corpus, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
         "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (target / "datasets").exists()  # would shadow Hugging Face's `datasets`
    assert (target / "mgr_tf" / "data" / "fma_spectrograms" / "fma_spectrograms_dataset_builder.py").is_file()
    script = (
        "import mgr_tf, mgr_tf.data as d, mgr_tf.core.config as c\n"
        f"assert mgr_tf.__file__.startswith({str(target)!r}), mgr_tf.__file__\n"
        f"cfg = c.DataConfig(data_dir={str(tiny_corpus)!r}, beat=True, batch_size=64)\n"
        "print(sum(int(x['spectrogram'].shape[0]) for x, _ in d.make_dataset(cfg, 'test')))\n"
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="2",
               MGR_TF_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) > 0
