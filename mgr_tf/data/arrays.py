"""Reading one stored array (`.npy` / `.npy.gz`) safely: header first, caps, no unpickling, one clear message.

An array is read from its .npy header first: its kind, shape and size are checked against the caps before its
data is read or decompressed, so a small compressed file cannot take gigabytes; object arrays are refused, never
unpickled. `mgr_tf.data.readers` re-exports these functions.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from mgr_tf.core.config import FUSED_BANDS
from mgr_tf.data.layout import DEFAULT_FRAME_CAP, DEFAULT_SIZE_CAP_MB, MAX_ABS_VALUE

_GZIP_MAGIC = b"\x1f\x8b"
_MB = 1 << 20


def resolve_sample_path(path: str | Path) -> Path:
    """The existing file among `path`, its `.gz` twin and its un-gzipped twin.

    Args:
        path: a sample path ending in `.npy` or `.npy.gz`.

    Raises:
        FileNotFoundError: neither variant exists (both names are given).
    """
    path = Path(path)
    if path.name.endswith(".npy.gz"):
        candidates = [path, path.with_name(path.name[:-3])]
    elif path.name.endswith(".npy"):
        candidates = [path, path.with_name(path.name + ".gz")]
    else:
        candidates = [path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{tried}: spectrogram file not found")


def load_spectrogram(path: str | Path, *, num_bands: int | None = FUSED_BANDS, frame_cap: int = DEFAULT_FRAME_CAP,
                     size_cap_mb: float = DEFAULT_SIZE_CAP_MB) -> np.ndarray:
    """Loads one spectrogram array, stored (bands, time), as float32.

    Accepts `.npy` and gzip-compressed `.npy.gz`, whichever of the two exists. The .npy header is read first:
    an array longer than `frame_cap` frames or larger than `size_cap_mb` is refused before its data is read or
    decompressed, so a small compressed file cannot take gigabytes. Nothing is ever unpickled.

    Args:
        path: the sample file (either suffix).
        num_bands: expected number of rows (140 = 128 mel + 12 chroma); None = any (either axis may be time).
        frame_cap: the most frames (time steps) accepted; with `num_bands` None, the longer axis.
        size_cap_mb: the most bytes of array data accepted, in MiB (2^20 bytes).

    Returns:
        float32 array of shape (num_bands, time), time >= 1, all values finite and within +-MAX_ABS_VALUE.

    Raises:
        FileNotFoundError: no such file (either suffix).
        ValueError: the file is not gzip though named .gz, is truncated or not a .npy array, holds an array of
            the wrong rank, dtype or band count, zero length, more than the caps, or non-finite or absurdly large
            values.
    """
    path = resolve_sample_path(path)
    with open(path, "rb") as handle:
        magic = handle.read(2)
        if not magic:
            raise ValueError(f"{path}: empty file (0 bytes)")
        handle.seek(0)
        gz = path.name.endswith(".gz")
        if gz and magic != _GZIP_MAGIC:
            raise ValueError(f"{path}: named .gz but is not a gzip file")
        stream = gzip.GzipFile(fileobj=handle, mode="rb") if gz else handle
        try:
            shape, fortran, dtype = _npy_header(stream)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated {'gzip data' if gz else 'file'} ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"{path}: not a readable .npy array, truncated or corrupt ({exc})") from None
        _check_header(path, shape, dtype, num_bands, frame_cap, size_cap_mb)
        size = int(np.prod(shape)) * dtype.itemsize
        try:
            data = stream.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    if len(data) < size:
        raise ValueError(f"{path}: not a readable .npy array, truncated or corrupt ({len(data)} of {size} data bytes)")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"{path}: {int(finite.size - finite.sum())} NaN/Inf value(s)")
    largest = float(np.abs(array).max())
    if largest > MAX_ABS_VALUE:
        raise ValueError(f"{path}: values up to {largest:.3g} in magnitude (beyond {MAX_ABS_VALUE:g}, which no stored "
                         "feature reaches: garbage or another scale)")
    return array


def _npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from the header of a .npy stream, which is left at the first data byte."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def _check_header(path: Path, shape: tuple[int, ...], dtype: np.dtype, num_bands: int | None, frame_cap: int,
                  size_cap_mb: float) -> None:
    """Refuses, from the header alone, an array of the wrong kind, rank or bands, an empty one, or one above the caps."""
    if dtype.hasobject or dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected a numeric array, got dtype {dtype}")
    if len(shape) != 2:
        raise ValueError(f"{path}: expected a 2-D (bands, time) array, got shape {shape}")
    if num_bands is not None and shape[0] != num_bands:
        raise ValueError(
            f"{path}: expected {num_bands} bands"
            f"{' (rows: 128 mel + 12 chroma)' if num_bands == FUSED_BANDS else ''}, got shape {shape}"
        )
    if min(shape) == 0:
        raise ValueError(f"{path}: empty spectrogram (0 frames)")
    frames = shape[1] if num_bands is not None else max(shape)
    if frames > frame_cap:
        raise ValueError(f"{path}: {frames} frames, more than the cap of {frame_cap} (a clip has about 1 300; "
                         f"--frame-cap raises the cap)")
    size = int(np.prod(shape)) * dtype.itemsize
    if size > size_cap_mb * _MB:
        raise ValueError(f"{path}: {size / _MB:.0f} MiB of array data, more than the cap of {size_cap_mb:g} MiB "
                         f"(--size-cap-mb raises the cap)")
