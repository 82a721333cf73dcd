"""Audio files in: decoded whole (`load_audio`) or in blocks (`stream_audio`), cut into windows (`windows`), and the
rules that refuse a recording (`too_short`, `silent`) that ingest and predict share.

`stream_audio` gives exactly the samples of `load_audio` (librosa's reading: soundfile, the channels averaged by
``librosa.to_mono``, then soxr's HQ resampler, whose streaming form is bit-identical to its one-shot form, and
librosa's length fix), a block at a time, so an hour-long file never sits in memory whole. The module imports
no TensorFlow: the decoding worker processes of `mgr_tf.serving.batch` import only it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import librosa
import numpy as np
import soundfile as sf
import soxr

from mgr_tf.core.config import FeatureConfig

# Files this much shorter than the clip are kept at their length by default: FMA's 30 s previews
# decode to 29.9..30.0 s (the published arrays have 1291..1293 frames).
SHORT_TOLERANCE_SECONDS = 1.0
SILENCE_DB = -60.0  # a recording whose peak is at or below this level (dBFS) is silent
BLOCK_SECONDS = 10.0  # decoded per read of `stream_audio`
RESAMPLER = "soxr_hq"  # librosa.load's default, which `load_audio` uses


def load_audio(path: str | Path, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Reads an audio file as mono float32 at ``cfg.sample_rate``.

    Args:
        path: audio file (anything soundfile or librosa's fallback reader can decode).
        cfg: feature settings (sample rate).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, cannot be decoded or holds no samples.
    """
    path = _checked(path)
    try:
        with warnings.catch_warnings():
            # librosa warns before falling back to audioread; the error below is what users need.
            warnings.simplefilter("ignore")
            audio, _ = librosa.load(path, sr=cfg.sample_rate, mono=True, dtype=np.float32, res_type=RESAMPLER)
    except Exception as exc:  # soundfile/audioread raise many unrelated types for corrupt data
        raise ValueError(f"{path}: cannot decode audio ({type(exc).__name__}: {exc})") from None
    if audio.size == 0:
        raise ValueError(f"{path}: audio file holds no samples")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{path}: audio holds non-finite samples")
    return audio


def _checked(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such audio file")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    return path


def stream_audio(path: str | Path, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `sample_rate` whose concatenation equals `load_audio(path)` sample for sample.

    Files soundfile cannot open (formats only librosa's audioread fallback reads) are decoded whole by
    `load_audio` and given as one block.

    Args:
        path: audio file.
        sample_rate: the rate of the blocks.
        block_seconds: seconds of the file read per block.

    Raises:
        FileNotFoundError, ValueError: as `load_audio`, when a block is read.
    """
    path = _checked(path)
    try:
        handle = sf.SoundFile(path)
    except sf.SoundFileRuntimeError:  # not soundfile's: librosa's fallback reader, whole
        yield load_audio(path, FeatureConfig(sample_rate=sample_rate))
        return
    with handle:
        native = handle.samplerate
        resampler = None if native == sample_rate else soxr.ResampleStream(native, sample_rate, 1, dtype="float32",
                                                                           quality=RESAMPLER)
        # librosa fixes the resampled length to ceil(n * ratio): the last `held` samples wait for the end.
        held = np.zeros(0, np.float32)
        read = given = 0
        hold = sample_rate
        while True:
            try:
                block = handle.read(frames=max(1, int(block_seconds * native)), dtype="float32", always_2d=False)
            except Exception as exc:  # a decoder failing mid-file
                raise ValueError(f"{path}: cannot decode audio ({type(exc).__name__}: {exc})") from None
            last = len(block) == 0
            if last:
                block = np.zeros(0, np.float32)
            else:
                read += len(block)
                block = librosa.to_mono(block.T)
                if not np.all(np.isfinite(block)):
                    raise ValueError(f"{path}: audio holds non-finite samples")
            if resampler is not None:
                block = resampler.resample_chunk(block, last=last)
            held = np.concatenate([held, block]) if len(held) else block
            if last:
                break
            if len(held) > hold:
                yield held[:-hold]
                given += len(held) - hold
                held = held[-hold:]
        if read == 0:
            raise ValueError(f"{path}: audio file holds no samples")
        total = read if resampler is None else int(np.ceil(read * (float(sample_rate) / native)))
        held = librosa.util.fix_length(held, size=max(total - given, 0))
        if len(held):
            yield np.ascontiguousarray(held, np.float32)


@dataclass
class Recording:
    """What reading a file's blocks through `windows` found: its length and peak, for `too_short` and `silent`.

    Args:
        samples: samples read.
        peak: the largest absolute sample.
    """

    samples: int = 0
    peak: float = 0.0


def windows(blocks: Iterable[np.ndarray], window: int | None, min_tail: int,
            recording: Recording | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, window) of consecutive `window`-sample windows of a waveform given in blocks.

    The last partial window is kept when it has at least `min_tail` samples or is the only one.

    Args:
        blocks: the waveform, in blocks of any size (`stream_audio`, or one array).
        window: window length in samples; None = the whole waveform as one window.
        min_tail: the shortest last partial window kept (unless it is the only window).
        recording: filled in with the length and peak of everything read.
    """
    recording = recording if recording is not None else Recording()
    pending: list[np.ndarray] = []
    pending_samples = start = 0
    for block in blocks:
        if not len(block):
            continue
        recording.samples += len(block)
        recording.peak = max(recording.peak, float(np.max(np.abs(block))))
        pending.append(block)
        pending_samples += len(block)
        while window is not None and pending_samples >= window:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield start, np.ascontiguousarray(joined[:window])
            start += window
            rest = joined[window:]
            pending, pending_samples = ([rest] if len(rest) else []), len(rest)
    if pending_samples and (start == 0 or pending_samples >= min_tail):
        yield start, np.ascontiguousarray(np.concatenate(pending) if len(pending) > 1 else pending[0])


def shortest_seconds(clip_seconds: float, min_seconds: float | None = None) -> float:
    """The shortest recording kept at its length: `min_seconds`, or by default the clip less
    `SHORT_TOLERANCE_SECONDS` (at most half the clip)."""
    if min_seconds is not None:
        return min_seconds
    return max(clip_seconds - SHORT_TOLERANCE_SECONDS, clip_seconds / 2)


def too_short(samples: int, sample_rate: int, min_seconds: float, hint: str) -> str | None:
    """Why a recording of `samples` samples is refused as too short, or None when it is long enough.

    Args:
        samples: its length.
        sample_rate: its rate.
        min_seconds: the shortest kept (`shortest_seconds`).
        hint: what the user can do about it (the command's flags), appended to the reason.
    """
    min_len = int(round(min_seconds * sample_rate))
    if samples >= min_len:
        return None
    return f"too short ({samples / sample_rate:.1f} s < {min_len / sample_rate:g} s; {hint})"


def silent(peak: float, silence_db: float = SILENCE_DB) -> str | None:
    """Why a recording whose largest absolute sample is `peak` is refused as silent, or None when it is not."""
    if peak > 10.0 ** (silence_db / 20.0):
        return None
    level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "all zeros"
    return f"silent clip (peak {level} <= {silence_db:g} dBFS)"
