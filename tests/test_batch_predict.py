"""`python -m mgr_tf.predict` over folders: listing, decoding in blocks, batched windows with the numbers of one file
at a time, rows streamed to CSV / JSON Lines and resumed, the timeline, bad files, and `--beam`."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgr_tf.core.cli import UserError, filtered_stderr, run_cli
from mgr_tf.core.rows import RowWriter
from mgr_tf.data.inputs import Reading, list_inputs, read_input
from mgr_tf.features.decode import load_audio, stream_audio, windows

SR = 22050


def _music(seconds: float, seed: int, sr: int = SR, stereo: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 110.0 * 2 ** (rng.integers(0, 24) / 12) * t)
    x = (x + 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if stereo else x


# ------------------------------------------------------------------------------------------------ fast


def test_listing_expands_folders_in_order_and_reads_file_lists(tmp_path, monkeypatch):
    for name in ("b/2.wav", "b/1.ogg", "a.mp3", "b/notes.txt", "c/x.npy"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a comment\n\n{tmp_path / 'a.mp3'}\nmissing.wav\n")
    found = list_inputs([str(tmp_path / "b"), str(tmp_path / "a.mp3"), str(tmp_path / "c")], str(listing))
    assert found == [str(tmp_path / "b" / "1.ogg"), str(tmp_path / "b" / "2.wav"), str(tmp_path / "a.mp3"),
                     str(tmp_path / "c" / "x.npy"), "missing.wav"]
    with pytest.raises(FileNotFoundError, match="file list not found"):
        list_inputs([], str(tmp_path / "nope.txt"))


def test_streamed_blocks_and_windows_equal_the_whole_file(tmp_path):
    path = tmp_path / "stereo.flac"
    sf.write(path, _music(23.0, 1, 44100, stereo=True), 44100)
    from mgr_tf.core.config import FeatureConfig

    for rate in (22050, 16000):
        whole = load_audio(path, FeatureConfig(sample_rate=rate))
        for block in (10.0, 1.7):
            np.testing.assert_array_equal(np.concatenate(list(stream_audio(path, rate, block))), whole)
        cut = [(start, w) for start, w in windows(stream_audio(path, rate, 1.7), 5 * rate, 2 * rate)]
        assert [start for start, _ in cut] == [0, 5 * rate, 10 * rate, 15 * rate, 20 * rate]  # a 3 s tail kept
        np.testing.assert_array_equal(np.concatenate([w for _, w in cut]), whole)
    # A tail shorter than min_tail is dropped, unless it is the only window.
    assert [len(w) for _, w in windows([np.ones(25)], 10, 6)] == [10, 10]
    assert [len(w) for _, w in windows([np.ones(4)], 10, 6)] == [4]


def test_reading_refuses_silent_and_short_recordings_after_their_windows(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(SR * 4, np.float32), SR)
    sf.write(tmp_path / "short.wav", _music(2.0, 2), SR)
    reading = Reading(SR, window_seconds=3.0, min_seconds=2.5, silence_db=-60.0)
    with pytest.raises(ValueError, match=r"silent\.wav: silent clip \(peak all zeros"):
        list(read_input(str(tmp_path / "silent.wav"), reading))
    with pytest.raises(ValueError, match=r"short\.wav: too short \(2\.0 s < 2\.5 s; use --min-seconds\)"):
        list(read_input(str(tmp_path / "short.wav"), reading))
    pieces = list(read_input(str(tmp_path / "short.wav"), Reading(SR, window_seconds=3.0)))
    assert [(p.number, p.start, p.end) for p in pieces] == [(0, 0.0, 2.0)]


def test_row_writer_resumes_cutting_a_half_row_and_an_unfinished_group(tmp_path):
    names = ["input", "window", "windows", "score"]
    out = tmp_path / "rows.csv"
    with RowWriter(out, names, grouped=True) as writer:
        writer.write([{"input": "a", "window": 0, "windows": 1, "score": 0.5}])
        writer.write([{"input": "b", "window": w, "windows": 3, "score": 0.25} for w in range(3)])
        writer.write([{"input": "c", "window": w, "windows": 2, "score": 1.0} for w in range(2)])
    complete = out.read_text()
    lines = complete.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:5])  # killed in the middle of c's rows
    with RowWriter(out, names, grouped=True) as writer:
        assert writer.done == {"a", "b"}
    assert out.read_text() == "".join(lines[:5])  # c's first row went with its half second row
    with open(out, "a") as handle:
        handle.write("a,0,1,0.5\n")  # another file's rows
    with pytest.raises(UserError, match="not these rows'"):
        RowWriter(out, ["input", "windows", "other"])
    jsonl = tmp_path / "rows.jsonl"
    with RowWriter(jsonl, ["input", "windows", "score"]) as writer:
        writer.write([{"input": "x,\"y\"", "windows": 1, "score": 0.125}])
    with RowWriter(jsonl, ["input", "windows", "score"]) as writer:
        assert writer.done == {"x,\"y\""}
    assert json.loads(jsonl.read_text()) == {"input": "x,\"y\"", "windows": 1, "score": 0.125}
    with pytest.raises(UserError, match="must end in .csv or .jsonl"):
        RowWriter(tmp_path / "rows.txt", names)


def test_stderr_filter_drops_tensorflow_notices_and_passes_errors(capfd):
    with filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796158212.706544   30423 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1796158218.799899   30423 cuda_platform.cc:52] a real error\n")
        os.write(2, b"Traceback (most recent call last):\n")
    err = capfd.readouterr().err
    assert err == ("E0000 00:00:1796158218.799899   30423 cuda_platform.cc:52] a real error\n"
                   "Traceback (most recent call last):\n")


# ------------------------------------------------------------------------------------------------ with a model


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Audio files in nested folders: 30 s clips in three formats, a 72 s track (two windows and a 12 s tail) and a
    35 s one (its 5 s tail dropped)."""
    root = tmp_path_factory.mktemp("collection")
    files = []
    for i in range(8):
        ext, sr, stereo = [("wav", SR, False), ("flac", 44100, True), ("ogg", SR, False)][i % 3]
        path = root / f"set{i % 2}" / f"clip{i}.{ext}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _music(30.0, i, sr, stereo), sr)
        files.append(path)
    for seconds, name in ((72.0, "long.wav"), (35.0, "tail.wav")):
        sf.write(root / name, _music(seconds, int(seconds), SR), SR)
        files.append(root / name)
    return root, sorted(str(p) for p in files)


def _per_file_reference(export, path: str) -> tuple[np.ndarray, int]:
    """The mean probabilities of a file as predict computed them one file and one window at a time: the whole file
    decoded, cut into 30 s windows (a tail of 10 s or more kept), each window through serving_waveform alone."""
    import tensorflow as tf

    from mgr_tf.core.config import FeatureConfig, from_dict

    config = json.loads((export / "assets" / "config.json").read_text())
    cfg = from_dict(FeatureConfig, config["features"])
    audio = load_audio(path, cfg)
    clip = int(cfg.clip_seconds * cfg.sample_rate)
    cut = [audio[i:i + clip] for i in range(0, len(audio), clip)]
    cut = [w for w in cut if len(w) == clip or len(w) >= 10 * cfg.sample_rate]
    signature = tf.saved_model.load(str(export)).signatures["serving_waveform"]
    probs = [signature(tf.constant(w[None]))["probabilities"].numpy()[0] for w in cut]
    return np.mean(probs, axis=0), len(cut)


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_folder_rows_have_the_numbers_of_one_file_at_a_time(genre_run, collection, tmp_path, capsys):
    from mgr_tf.predict import main
    from tests.conftest import export_dir

    root, files = collection
    export = export_dir(genre_run)
    names = json.loads((export / "assets" / "config.json").read_text())["class_names"]
    expected = {path: _per_file_reference(export, path) for path in files}
    # One window per model call: the same numbers, bit for bit (decoding in blocks gives the same samples).
    # Windows of several files per call: the same up to the float32 rounding of batched kernels (a few ulp).
    for batch, check in (("1", np.testing.assert_array_equal),
                         ("3", lambda a, b, **kw: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, **kw))):
        out = tmp_path / f"rows{batch}.csv"
        assert run_cli(main, [str(export), str(root), "--out", str(out), "--workers", "2", "--batch-size", batch,
                              "--quiet"]) == 0
        rows = _csv_rows(out)
        assert [r["input"] for r in rows] == list_inputs([str(root)]) and sorted(r["input"] for r in rows) == files
        for row in rows:
            probabilities, count = expected[row["input"]]
            assert int(row["windows"]) == count
            check(np.array([float(row[n]) for n in names], np.float32), probabilities, err_msg=row["input"])
            assert row["genre"] == names[int(np.argmax(probabilities))]
        assert {int(r["windows"]) for r in rows} == {1, 3}

    # The same through the few-files path, its printed format unchanged, and through JSON Lines.
    capsys.readouterr()
    assert run_cli(main, [str(export), files[0], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["probabilities"][rows[0]["genre"]] == pytest.approx(float(rows[0][rows[0]["genre"]]), abs=1e-8)
    assert run_cli(main, [str(export), "--files-from", str(_listing(tmp_path, files[:3])), "--out",
                          str(tmp_path / "rows.jsonl"), "--workers", "1", "--quiet"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert lines == [{k: (int(v) if k == "windows" else v if k in ("input", "genre") else float(v))
                      for k, v in row.items()} for row in rows if row["input"] in files[:3]]


def _listing(tmp_path: Path, files: list[str]) -> Path:
    path = tmp_path / "files.txt"
    path.write_text("".join(f"{f}\n" for f in files))
    return path


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(genre_run, collection, tmp_path, capsys):
    from mgr_tf.predict import main
    from tests.conftest import export_dir

    root, files = collection
    export = export_dir(genre_run)
    full, out = tmp_path / "full.csv", tmp_path / "resumed.csv"
    one_window_a_call = ["--batch-size", "1", "--quiet"]  # numbers that do not depend on what was batched together
    assert run_cli(main, [str(export), str(root), "--out", str(full), *one_window_a_call]) == 0
    lines = full.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:17])  # three files done, the fourth's row half written
    capsys.readouterr()
    assert run_cli(main, [str(export), str(root), "--out", str(out), *one_window_a_call]) == 0
    assert "3 already there" in capsys.readouterr().err
    assert out.read_text() == full.read_text()
    assert run_cli(main, [str(export), str(root), "--out", str(out), *one_window_a_call]) == 0
    assert f"{len(files)} already there" in capsys.readouterr().err and out.read_text() == full.read_text()


@pytest.mark.slow
def test_timeline_gives_one_row_per_window_and_resumes_an_unfinished_file(genre_run, collection, tmp_path, capsys):
    from mgr_tf.predict import main
    from tests.conftest import export_dir

    root, files = collection
    export = export_dir(genre_run)
    long, tail = str(root / "long.wav"), str(root / "tail.wav")
    out = tmp_path / "timeline.csv"
    command = [str(export), tail, long, "--out", str(out), "--timeline", "--batch-size", "1", "--quiet"]
    assert run_cli(main, command) == 0
    rows = _csv_rows(out)
    assert [(r["input"], r["window"], r["start"], r["end"], r["windows"]) for r in rows] == [
        (tail, "0", "0.0", "30.0", "1"),
        (long, "0", "0.0", "30.0", "3"), (long, "1", "30.0", "60.0", "3"), (long, "2", "60.0", "72.0", "3")]
    capsys.readouterr()
    assert run_cli(main, [str(export), long, "--json"]) == 0
    windows_json = json.loads(capsys.readouterr().out)["results"][0]["windows"]
    for row, window in zip(rows[1:], windows_json):
        assert row["genre"] == window["genre"]
        assert float(row[row["genre"]]) == pytest.approx(window["probabilities"][row["genre"]], abs=1e-8)
    complete = out.read_text()
    out.write_text("".join(complete.splitlines(keepends=True)[:4]))  # killed after two of long.wav's three rows
    capsys.readouterr()
    assert run_cli(main, command) == 0
    assert "1 already there" in capsys.readouterr().err and out.read_text() == complete


@pytest.mark.slow
def test_bad_files_get_one_line_each_and_the_others_their_rows(genre_run, collection, tmp_path, capsys):
    from mgr_tf.predict import main
    from tests.conftest import export_dir

    root, files = collection
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "silent.wav", np.zeros(30 * SR, np.float32), SR)
    sf.write(bad / "short.wav", _music(8.0, 3), SR)
    out = tmp_path / "rows.jsonl"
    code = run_cli(main, [str(export_dir(genre_run)), str(bad), files[0], str(tmp_path / "missing.wav"), "--out",
                          str(out), "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 5, err
    reasons = dict(zip(["corrupt.mp3", "empty.wav", "short.wav", "silent.wav", "missing.wav"],
                       ["cannot decode", "empty file", "too short (8.0 s < 29 s; use --min-seconds)",
                        "silent clip", "not found"]))
    for line, (name, reason) in zip(err, reasons.items()):
        assert name in line and reason in line, (line, reason)
    assert [json.loads(line)["input"] for line in out.read_text().splitlines()] == [files[0]]
    assert run_cli(main, [str(export_dir(genre_run)), str(bad / "short.wav"), "--min-seconds", "5"]) == 0


@pytest.mark.slow
def test_beam_pipeline_writes_the_rows_of_the_local_run(genre_run, tmp_path, capsys):
    from mgr_tf.predict import main
    from tests.conftest import export_dir

    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(20):
        sf.write(folder / f"{i:02d}.wav", _music(30.0 + (i % 3), 100 + i, 16000), 16000)
    (folder / "bad.wav").write_bytes(b"RIFF")
    export = str(export_dir(genre_run))
    local = tmp_path / "local.csv"
    assert run_cli(main, [export, str(folder), "--out", str(local), "--quiet"]) == 2
    assert run_cli(main, [export, str(folder), "--out", str(tmp_path / "beam" / "rows.csv"), "--beam",
                          "--direct_num_workers=2"]) == 2
    err = capsys.readouterr().err
    assert "wrote 20 rows for 20 files" in err and err.count("error: ") == 2  # bad.wav, once per run
    shards = sorted((tmp_path / "beam").glob("rows-*-of-*.csv"))
    header, *rows = local.read_text().splitlines()
    beam_rows = [line for shard in shards for line in shard.read_text().splitlines()[1:]]
    assert all(shard.read_text().splitlines()[0] == header for shard in shards)
    assert sorted(beam_rows) == sorted(rows) and len(rows) == 20
