"""The input files of a prediction: folders and file lists expanded (`list_inputs`), and one file read into the
pieces a model takes (`read_input`, which the decoding workers of `mgr_tf.serving.batch` run).

Imports no TensorFlow: a worker process imports this module, `mgr_tf.data.readers` and `mgr_tf.features.decode`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mgr_tf.core.config import DEFAULT_FRAME_CAP, DEFAULT_SIZE_CAP_MB
from mgr_tf.data.readers import load_spectrogram
from mgr_tf.features.decode import Recording, silent, stream_audio, too_short, windows

SPECTROGRAM_SUFFIXES = (".npy", ".npy.gz")
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a")


def is_spectrogram(path: str | Path) -> bool:
    """Whether `path` names a stored spectrogram (`.npy` / `.npy.gz`) rather than audio."""
    return str(path).lower().endswith(SPECTROGRAM_SUFFIXES)


def list_inputs(inputs: Sequence[str], files_from: str | None = None) -> list[str]:
    """The files to predict, in order, each once: INPUTs as given, folders expanded (recursively, sorted, the
    audio and spectrogram files in them), then the lines of `files_from`.

    Args:
        inputs: files or folders. A path that does not exist is kept (its row reports it).
        files_from: a text file with one path per line ("-" = standard input); blank lines and lines starting
            with "#" are skipped; relative paths are relative to the current directory, as INPUTs are.

    Raises:
        FileNotFoundError: `files_from` does not exist.
    """
    listed = list(inputs)
    if files_from is not None:
        if files_from == "-":
            text = sys.stdin.read()
        else:
            if not Path(files_from).is_file():
                raise FileNotFoundError(f"{files_from}: file list not found")
            text = Path(files_from).read_text()
        listed += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    files: dict[str, None] = {}
    for entry in listed:
        path = Path(entry)
        if path.is_dir():
            suffixes = AUDIO_SUFFIXES + SPECTROGRAM_SUFFIXES
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
            files.update(dict.fromkeys(str(p) for p in found))
        else:
            files[entry] = None
    return list(files)


@dataclass(frozen=True)
class Reading:
    """How a model's input files become pieces (what a decoding worker does, so it holds only values).

    Args:
        sample_rate: audio is decoded, mono, at this rate.
        window_seconds: audio is cut into windows this long; None = the whole recording is one piece.
        min_tail_seconds: the last partial window is kept when at least this long (or when it is the only one).
        min_seconds: recordings shorter than this are refused (None = any length).
        short_hint: what the user can do about a recording refused as too short (the command's flag).
        silence_db: recordings whose peak is at or below this level in dBFS are refused (None = never).
        block_seconds: audio decoded per block (memory stays flat whatever the recording's length).
        frame_cap: a stored spectrogram longer than this (either axis) is refused from its header.
        size_cap_mb: a stored spectrogram holding more MiB of data than this is refused from its header.
    """

    sample_rate: int
    window_seconds: float | None = None
    min_tail_seconds: float = 0.0
    min_seconds: float | None = None
    short_hint: str = "use --min-seconds"
    silence_db: float | None = None
    block_seconds: float = 10.0
    frame_cap: int = DEFAULT_FRAME_CAP
    size_cap_mb: float = DEFAULT_SIZE_CAP_MB


@dataclass(frozen=True)
class Piece:
    """One model input of a file: an audio window, or a whole stored spectrogram.

    Args:
        number: its position in the file (0, 1, ...).
        start: where it starts in the recording, in seconds (0 for a spectrogram).
        end: where it ends, in seconds (0 for a spectrogram).
        data: the mono waveform at the reading's rate, or the spectrogram array as stored.
        spectrogram: whether `data` is a stored spectrogram.
    """

    number: int
    start: float
    end: float
    data: np.ndarray
    spectrogram: bool = False


def read_input(path: str, reading: Reading) -> Iterator[Piece]:
    """The pieces of one input file, in order, decoded in blocks.

    A recording refused as too short or silent raises after its pieces (its length and peak are known at its
    end); the caller drops what it got.

    Raises:
        ValueError, FileNotFoundError: one line naming the file and what is wrong with it.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{path}: input file not found")
    if file.is_file() and file.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    if is_spectrogram(path):
        array = load_spectrogram(file, num_bands=None, frame_cap=reading.frame_cap, size_cap_mb=reading.size_cap_mb)
        yield Piece(0, 0.0, 0.0, array, spectrogram=True)
        return
    rate = reading.sample_rate
    window = None if reading.window_seconds is None else int(reading.window_seconds * rate)
    recording = Recording()
    blocks = stream_audio(file, rate, reading.block_seconds)
    for number, (start, samples) in enumerate(windows(blocks, window, int(reading.min_tail_seconds * rate), recording)):
        yield Piece(number, start / rate, (start + len(samples)) / rate, samples)
    if reading.min_seconds is not None:
        short = too_short(recording.samples, rate, reading.min_seconds, reading.short_hint)
        if short is not None:
            raise ValueError(f"{path}: {short}")
    if reading.silence_db is not None:
        quiet = silent(recording.peak, reading.silence_db)
        if quiet is not None:
            raise ValueError(f"{path}: {quiet}")
