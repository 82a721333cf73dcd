"""Throughput of prediction (issue 21), every ratio measured side by side in one run:

- start-up: `python -m mgr_tf.<command> --help` against `python -c "import tensorflow"` (whole processes, medians);
- `predict` on the same 200 files of 30 s: the folder engine (`mgr_tf.serving.batch`: decoding workers, windows of
  many files per model call) against the per-file path it replaced (each file decoded whole, each window through
  the model alone, one file after another), same model (the default CNN genre export: mfcc, 256-frame patches,
  random weights, as the timing does not depend on them), same files, with the largest difference of their numbers;
- the encoder from audio files (`predict --tags` on 64 of the files with MSD_musicnn: decoding + front end +
  network) against the encoder alone on ready batches of patches, with the GFLOP/s of each beside a 2048 x 2048
  float32 matmul's; bfloat16 against float32 (speed, and the embeddings' cosine on real patches);
- peak memory (proportional set size of the process and its decoding workers) of `predict --out` on a 30- and a
  60-minute recording (44.1 kHz stereo OGG), against the per-file path on the 60-minute one;
- `beam_rows`: `predict --beam` (DirectRunner, two worker processes) against `predict --out` on the same files.

The 200 files are Emotify clips of a full 30 s read in place (`/work/shared/realdata/emotify`, never copied), or,
where there is no Emotify, synthesised into a temporary folder; long recordings are made in a temporary folder by
looping them.

    python -m mgr_tf.bench --only predict [--quick]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import soundfile as sf
import tensorflow as tf

from mgr_tf.bench import Row
from mgr_tf.bench.encoder_bench import emotify_dir
from mgr_tf.core.config import DataConfig, FeatureConfig, to_dict
from mgr_tf.core.parallel import default_workers
from mgr_tf.core.published import GENRES_10
from mgr_tf.data.inputs import Piece
from mgr_tf.features.decode import load_audio, windows
from mgr_tf.models import get_feature_type, model_config
from mgr_tf.models.build import build_model
from mgr_tf.models.musicnn.convert import encoder_file
from mgr_tf.models.musicnn.frontend import musicnn_frontend
from mgr_tf.models.musicnn.presets import EMBEDDING_OUTPUT, N_MELS, PATCH_FRAMES
from mgr_tf.serving.batch import predict_inputs
from mgr_tf.serving.export import export_model
from mgr_tf.serving.predict import Predictor, summarise_predictions
from mgr_tf.serving.tagger import TagPredictor
from mgr_tf.tasks import get_task

FILES, QUICK_FILES = 200, 16
ENCODER_FILES = 64  # of them through MSD_musicnn (640 patches: the encoder takes ~20x the CNN's time)
CLIP_SECONDS = 30.0
HELP_COMMANDS = ("train", "predict")
LONG_MINUTES, QUICK_LONG_MINUTES = (30, 60), (5, 10)
MATMUL = 2048


# ------------------------------------------------------------------------------------------------ the inputs

def audio_files(folder: Path, count: int) -> list[str]:
    """`count` recordings of 30 s: Emotify's full-length clips (in place), else synthesised into `folder`."""
    root = emotify_dir()
    if root is not None:
        clips = sorted(str(p) for p in (root / "audio").glob("*.ogg") if sf.info(str(p)).duration >= CLIP_SECONDS)
        genres = sorted({Path(c).name.split("_")[0] for c in clips})
        by_genre = [[c for c in clips if Path(c).name.startswith(g)] for g in genres]
        mixed = [c for group in zip(*by_genre) for c in group]  # the genres in turn
        if len(mixed) >= count:
            return mixed[:count]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sr = FeatureConfig().sample_rate
    t = np.arange(int(CLIP_SECONDS * sr)) / sr
    paths = []
    for i in range(count):
        tone = 0.3 * np.sin(2 * np.pi * 110 * 2 ** (i % 24 / 12) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip{i:04d}.ogg"
        sf.write(path, tone.astype(np.float32), sr)
        paths.append(str(path))
    return paths


def long_recording(path: Path, minutes: int, sources: list[str]) -> Path:
    """A `minutes`-long 44.1 kHz stereo OGG made by looping `sources`, written block by block."""
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, format="OGG", subtype="VORBIS") as out:
        written, i = 0, 0
        while written < minutes * 60 * 44100:
            clip = load_audio(sources[i % len(sources)], FeatureConfig(sample_rate=44100))
            out.write(np.stack([clip, 0.9 * clip], axis=1))
            written, i = written + len(clip), i + 1
    return path


def default_export(root: Path) -> Path:
    """The default CNN genre model (mfcc, 256-frame patches, random weights) exported with `serving_waveform`."""
    data, cfg = DataConfig(), FeatureConfig()
    bands = get_feature_type(data.features).bands(cfg)
    model = build_model(model_config("cnn"), get_task("genre"), num_bands=bands, frames=data.patch_frames,
                        window_hop=data.patch_frames // 2, num_classes=len(GENRES_10))
    config = {"task": "genre", "class_names": list(GENRES_10), "num_bands": bands, "features": to_dict(cfg),
              "data": {"features": data.features, "beat": False}}
    return export_model(model, "cnn_default", task="genre", class_names=GENRES_10, num_bands=bands, config=config,
                        root=root, waveform=True, feature_config=cfg, features=data.features)


# ------------------------------------------------------------------------------------------------ measurements

def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - start


def _children(pid: int) -> list[int]:
    """`pid` and every process under it (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def _pss_mb(pids: list[int]) -> float:
    """The proportional set size of processes, in MB: resident memory with each shared page split between the
    processes sharing it (forked decoding workers share the parent's pages; a sum of RSS would count them again)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def peak_memory(command: list[str]) -> tuple[float, float]:
    """(peak memory of the command's process tree in MB (`_pss_mb`, sampled every 50 ms), its wall seconds)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, _pss_mb(_children(process.pid)))
        time.sleep(0.05)
    err = process.stderr.read().decode()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {err[-500:]}")
    return peak, time.perf_counter() - start


def per_file_predict(predictor: Predictor, path: str) -> dict:
    """The per-file path `predict` had before the folder engine: the whole file decoded, cut into windows, each
    window through the model alone (one call each), the windows' predictions averaged."""
    reading = predictor.reading
    audio = load_audio(path, FeatureConfig(sample_rate=reading.sample_rate))
    cut = windows([audio], int(reading.window_seconds * reading.sample_rate),
                  int(reading.min_tail_seconds * reading.sample_rate))
    outputs = []
    for number, (_, window) in enumerate(cut):
        signature, example = predictor.examples(Piece(number, 0.0, 0.0, window), path)
        outputs.append(predictor.combine(predictor.run(signature, example)))
    return summarise_predictions(True, outputs, predictor.class_names)


def old_predict_command(model_dir: str, path: str) -> None:
    """`per_file_predict` of one file in a process of its own (the memory row's "before")."""
    per_file_predict(Predictor(model_dir, min_seconds=0), path)


# ------------------------------------------------------------------------------------------------ rows

def help_rows(quick: bool) -> list[Row]:
    """`--help` of commands against `import tensorflow`, whole processes, medians after a warm-up."""
    python = sys.executable
    commands = {"import tensorflow": [python, "-c", "import tensorflow"],
                **{c: [python, "-m", f"mgr_tf.{c}", "--help"] for c in HELP_COMMANDS}}
    seconds = {name: [] for name in commands}
    for name, command in commands.items():
        _wall(command)
    for _ in range(1 if quick else 3):  # alternate, so all see the same machine load
        for name, command in commands.items():
            seconds[name].append(_wall(command))
    base = statistics.median(seconds["import tensorflow"])
    rows = [Row("predict", 'python -c "import tensorflow"', base, "s", extra={"runs": seconds["import tensorflow"]})]
    for command in HELP_COMMANDS:
        value = statistics.median(seconds[command])
        rows.append(Row("predict", f"python -m mgr_tf.{command} --help", value, "s", ratio=base / value,
                        baseline="import tensorflow (speed-up)", target=">= 5x", extra={"runs": seconds[command]}))
    return rows


def predict_rows(export: Path, files: list[str], quick: bool) -> list[Row]:
    """The folder engine against the per-file path on the same files and model, alternated."""
    predictor = Predictor(export)
    workers = predictor.workers
    list(predict_inputs(predictor, files[:2], workers=workers))  # tracing, the workers' first start
    per_file_predict(predictor, files[0])
    seconds: dict[str, list[float]] = {"engine": [], "per file": []}
    got: dict[str, list] = {}
    for _ in range(1 if quick else 2):
        start = time.perf_counter()
        got["per file"] = [per_file_predict(predictor, f)["probabilities"] for f in files]
        seconds["per file"].append(time.perf_counter() - start)
        start = time.perf_counter()
        got["engine"] = [predictor.result_of(r)["probabilities"] for r in predict_inputs(predictor, files,
                                                                                         workers=workers)]
        seconds["engine"].append(time.perf_counter() - start)
    diff = max(abs(a[k] - b[k]) for a, b in zip(got["engine"], got["per file"]) for k in a)
    rate = {k: len(files) / min(v) for k, v in seconds.items()}
    return [
        Row("predict", f"predict, {len(files)} files of 30 s, per-file path (before)", rate["per file"], "files/s",
            extra={"seconds": seconds["per file"]}),
        Row("predict", f"predict, {len(files)} files of 30 s, folder engine ({workers} decoding workers, "
            f"{predictor.batch_size} windows a call)", rate["engine"], "files/s",
            ratio=rate["engine"] / rate["per file"], baseline="per-file path, same model and files",
            target=">= 2x", extra={"seconds": seconds["engine"], "max_abs_difference": diff,
                                   "same_genres": all(max(a, key=a.get) == max(b, key=b.get)
                                                      for a, b in zip(got["engine"], got["per file"]))}),
    ]


def _flops_per_patch(model) -> float:
    """Floating-point operations of one patch through the network: 2 x the multiply-adds of its convolutions and
    dense layers (the rest is a few percent)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            kh, kw, cin, cout = layer.kernel.shape
            flops += 2 * out[1] * out[2] * cout * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(np.prod(layer.kernel.shape))
    return float(flops)


class _Counted:
    """A `TagPredictor` that counts the patches it runs."""

    def __init__(self, model):
        self.model, self.patches = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def run(self, signature, batch):
        self.patches += len(batch)
        return self.model.run(signature, batch)


def encoder_rows(files: list[str], quick: bool) -> list[Row]:
    """MSD_musicnn from audio files (`predict --tags`) against the encoder alone, float32 and bfloat16."""
    path = encoder_file("MSD_musicnn")
    taggers = {p: TagPredictor(path, precision=p) for p in ("float32", "bfloat16")}
    float32 = keras.saving.load_model(path, compile=False)
    gflop = _flops_per_patch(float32) / 1e9
    rng = np.random.default_rng(0)
    ready = tf.constant(rng.uniform(0, 3, (taggers["float32"].batch_size, PATCH_FRAMES, N_MELS)).astype(np.float32))
    matmul_in = tf.random.normal((MATMUL, MATMUL))
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(matmul_in).numpy()
    workers = taggers["float32"].workers  # the default: decoding in this process on 2 cores
    alone, e2e, matmul_s = {p: [] for p in taggers}, {p: [] for p in taggers}, []
    per_core: list[float] = []  # float32 with one decoding process per core, the evidence for that default
    for tagger in taggers.values():
        tagger.run("patch", ready.numpy())  # tracing
    for _ in range(1 if quick else 2):
        start = time.perf_counter()
        for _ in range(3):
            matmul(matmul_in).numpy()
        matmul_s.append((time.perf_counter() - start) / 3)
        for precision, tagger in taggers.items():
            start = time.perf_counter()
            for _ in range(2 if quick else 6):
                tagger.run("patch", ready.numpy())
            alone[precision].append((2 if quick else 6) * len(ready) / (time.perf_counter() - start))
            counted = _Counted(tagger)
            start = time.perf_counter()
            list(predict_inputs(counted, files, workers=workers))
            e2e[precision].append((counted.patches / (time.perf_counter() - start), counted.patches / len(files)))
            if precision == "float32":
                counted = _Counted(tagger)
                start = time.perf_counter()
                list(predict_inputs(counted, files, workers=default_workers()))
                per_core.append(counted.patches / (time.perf_counter() - start))
    matmul_gflops = 2 * MATMUL ** 3 / min(matmul_s) / 1e9
    best_alone = {p: max(v) for p, v in alone.items()}
    best_e2e = {p: max(v) for p, v in e2e.items()}  # (patches/s, patches per clip)
    # Embedding agreement on real patches: the front end of a few of the files.
    patches = np.concatenate([np.asarray(musicnn_frontend(load_audio(f, FeatureConfig(sample_rate=16000))))
                              for f in files[:8]])
    embeddings = {p: np.concatenate([t.run("patch", patches[i:i + 32])[EMBEDDING_OUTPUT]
                                     for i in range(0, len(patches), 32)]) for p, t in taggers.items()}
    a, b = embeddings["float32"], embeddings["bfloat16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    rows = [Row("predict", f"{MATMUL}x{MATMUL} float32 matmul", matmul_gflops, "GFLOP/s")]
    for precision in taggers:
        rate, per_clip = best_e2e[precision]
        rows += [
            Row("predict", f"MSD_musicnn alone, {precision}, ready batches of {len(ready)} patches",
                best_alone[precision], "patches/s", ratio=best_alone[precision] * gflop / matmul_gflops,
                baseline="matmul GFLOP/s", extra={"gflops": best_alone[precision] * gflop,
                                                  "gflop_per_patch": gflop}),
            Row("predict", f"MSD_musicnn from audio files (predict --tags), {precision}, {len(files)} files of 30 s",
                rate / per_clip, "clips/s", ratio=rate / best_alone[precision],
                baseline=f"encoder alone ({precision}, same run)", target=">= 0.8x",
                extra={"patches_per_s": rate, "gflops": rate * gflop, "patches_per_clip": per_clip,
                       "workers": workers,
                       **({"one_worker_per_core_ratio": max(per_core) / best_alone[precision]}
                          if precision == "float32" else {})}),
        ]
    rows += [
        Row("predict", "MSD_musicnn alone, bfloat16 vs float32", best_alone["bfloat16"], "patches/s",
            ratio=best_alone["bfloat16"] / best_alone["float32"], baseline="float32, same run", target=">= 1.25x"),
        Row("predict", f"MSD_musicnn embedding cosine, bfloat16 vs float32 ({len(a)} real patches, min)",
            float(cosine.min()), "cosine", target=">= 0.9999", extra={"mean": float(cosine.mean())}),
    ]
    return rows


def memory_rows(export: Path, folder: Path, sources: list[str], quick: bool) -> list[Row]:
    """Peak memory of `predict --out` on long recordings (flat in their length) and of the per-file path."""
    python = sys.executable
    minutes = QUICK_LONG_MINUTES if quick else LONG_MINUTES
    peaks = {}
    for length in minutes:
        recording = long_recording(folder / f"long{length}.ogg", length, sources)
        peaks[length] = peak_memory([python, "-m", "mgr_tf.predict", str(export), str(recording), "--out",
                                     str(folder / f"long{length}.csv"), "--quiet"])
    longest = folder / f"long{minutes[-1]}.ogg"
    before = peak_memory([python, "-c", "import sys; from mgr_tf.bench.predict_bench import old_predict_command; "
                          "old_predict_command(sys.argv[1], sys.argv[2])", str(export), str(longest)])
    short, long = minutes
    return [
        Row("predict", f"predict --out, peak memory, {short}-minute 44.1 kHz stereo recording", peaks[short][0], "MB",
            extra={"seconds": peaks[short][1]}),
        Row("predict", f"predict --out, peak memory, {long}-minute recording", peaks[long][0], "MB",
            ratio=peaks[long][0] / peaks[short][0], baseline=f"the {short}-minute recording (flat: ~1x)",
            target="< 1500 MB, ~1x", extra={"seconds": peaks[long][1]}),
        Row("predict", f"per-file path (before), peak memory, {long}-minute recording", before[0], "MB",
            extra={"seconds": before[1]}),
    ]


def beam_rows(quick: bool) -> list[Row]:
    """`predict --beam` (DirectRunner, 2 worker processes) against `predict --out`, the same files, whole commands.

    Self-contained: its own export and files in a temporary folder.
    """
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="mgr_tf-bench-beam-") as tmp:
        tmp = Path(tmp)
        export = default_export(tmp / "exports")
        files = audio_files(tmp / "audio", QUICK_FILES if quick else FILES)
        listing = tmp / "files.txt"
        listing.write_text("".join(f"{f}\n" for f in files))
        base = [python, "-m", "mgr_tf.predict", str(export), "--files-from", str(listing), "--quiet"]
        seconds = {
            "local": _wall([*base, "--out", str(tmp / "local.csv")]),
            "beam": _wall([*base, "--out", str(tmp / "beam" / "rows.csv"), "--beam", "--direct_num_workers=2",
                           "--direct_running_mode=multi_processing"]),
        }
    rate = {k: len(files) / v for k, v in seconds.items()}
    return [Row("predict", f"predict --beam (DirectRunner, 2 processes), {len(files)} files, whole command",
                rate["beam"], "files/s", ratio=rate["beam"] / rate["local"],
                baseline="predict --out, same files, whole command", extra={"seconds": seconds})]


def run(quick: bool) -> list[Row]:
    """All the rows above (`beam_rows` last).

    Args:
        quick: 16 files, 5- and 10-minute recordings, one round (a smoke run).
    """
    rows = help_rows(quick)
    with tempfile.TemporaryDirectory(prefix="mgr_tf-bench-predict-") as tmp:
        tmp = Path(tmp)
        export = default_export(tmp / "exports")
        files = audio_files(tmp / "audio", QUICK_FILES if quick else FILES)
        rows += predict_rows(export, files, quick)
        rows += encoder_rows(files[:ENCODER_FILES], quick)
        rows += memory_rows(export, tmp, files[:8], quick)
    rows += beam_rows(quick)
    return rows
