"""Audio synthesis of the synthetic corpus: one clip of a `Style` with its `Knobs`, in vectorised NumPy.

Drums are one-shots placed by slice-adding, chords, bass and lead are wavetable lines with
exponential decays; the mix gets the style's distortion, drone, tremolo, a brightness low-pass,
noise and crackle. Everything random comes from the generator passed in, so a seed gives the same
samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.signal import lfilter

from mgr_tf.data.synth.styles import Knobs, Style

_TABLE = 2048  # wavetable length


def _midi_hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0)


def _wavetable(harmonics: int, rolloff: float, odd: bool = False) -> np.ndarray:
    x = np.arange(_TABLE) / _TABLE
    ks = np.arange(1, harmonics + 1)
    if odd:
        ks = ks[ks % 2 == 1]
    amps = ks.astype(np.float64) ** -rolloff
    table = (amps[:, None] * np.sin(2 * np.pi * ks[:, None] * x[None, :])).sum(0)
    return (table / np.max(np.abs(table))).astype(np.float32)


def _render_line(onsets: np.ndarray, freqs: np.ndarray, n: int, sr: int, table: np.ndarray, decay: float,
                 attack: float = 0.005, vibrato: float = 0.0) -> np.ndarray:
    """One monophonic line: note i sounds from onsets[i] to onsets[i+1] with an exponential decay."""
    order = np.argsort(onsets, kind="stable")
    onsets = np.clip(np.asarray(onsets)[order].astype(np.int64), 0, n)
    freqs = np.asarray(freqs, np.float64)[order]
    keep = np.concatenate([onsets[1:] > onsets[:-1], [onsets[-1] < n]]) if onsets.size else onsets
    onsets, freqs = onsets[keep], freqs[keep]
    if onsets.size == 0:
        return np.zeros(n, np.float32)
    lengths = np.diff(np.concatenate([onsets, [n]]))
    start = onsets[0]
    note = np.repeat(np.arange(onsets.size, dtype=np.int32), lengths)
    t_rel = np.arange(start, n, dtype=np.int32) - onsets.astype(np.int32)[note]
    if vibrato:
        f = freqs[note] * (1.0 + vibrato * np.sin((2 * np.pi * 5.5 / sr) * np.arange(start, n)))
        cycles = np.cumsum(f / sr)
    else:
        # Phase restarts at each note (the envelope restarts there too); no running sum needed.
        cycles = (freqs / sr)[note] * t_rel
    index = ((cycles - np.floor(cycles)) * _TABLE).astype(np.int32) % _TABLE
    t_sec = t_rel.astype(np.float32) / np.float32(sr)
    env = np.exp(t_sec * np.float32(-1.0 / decay)) * np.minimum(np.float32(1.0), t_sec * np.float32(1.0 / attack))
    out = np.zeros(n, np.float32)
    out[start:] = table[index] * env
    return out


def _one_shots(style: Style, sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def t(seconds):
        return np.arange(int(seconds * sr)) / sr

    tk = t(0.35)
    kick_f = 45.0 + 110.0 * np.exp(-tk / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(kick_f) / sr) * np.exp(-tk / 0.12)
    ts = t(0.25)
    snare = 0.7 * rng.standard_normal(ts.size) * np.exp(-ts / 0.06) + 0.5 * np.sin(2 * np.pi * 190 * ts) * np.exp(-ts / 0.04)
    th = t(0.08)
    hat = np.diff(rng.standard_normal(th.size + 1)) * 0.35 * np.exp(-th / 0.015)
    tr = t(0.6)
    ride = sum(np.sin(2 * np.pi * f * tr + rng.uniform(0, 6.28)) for f in (3150.0, 4270.0, 5620.0, 7390.0))
    ride = 0.15 * ride * np.exp(-tr / 0.3) + 0.05 * np.diff(rng.standard_normal(tr.size + 1)) * np.exp(-tr / 0.05)
    tt = t(0.4)
    tom_f = style.tom_pitch * (1.0 + 0.5 * np.exp(-tt / 0.02))
    tom = np.sin(2 * np.pi * np.cumsum(tom_f) / sr) * np.exp(-tt / 0.15)
    return {name: np.asarray(a, np.float32) for name, a in
            dict(kick=kick, snare=snare, hat=hat, ride=ride, tom=tom).items()}


_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "hijaz": (0, 1, 4, 5, 7, 8, 10)}
_PROGRESSIONS = {"major": ((0, 4, 5, 3), (0, 3, 4, 3), (0, 5, 3, 4), (0, 3, 0, 4)),
                 "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 6, 2)),
                 "hijaz": ((0, 1, 0, 6), (0, 6, 1, 0))}


def synthesize(style: Style, knobs: Knobs, duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Renders one clip of `style` with `knobs` as mono float32 audio.

    Args:
        style: genre settings.
        knobs: per-clip parameters.
        duration: seconds.
        sr: sample rate.
        rng: randomness source (notes, hits, noise).
    """
    # Per-clip variation of the mix and timbre, so clips of one genre are not near-copies.
    style = dataclasses.replace(
        style, drum_gain=style.drum_gain * rng.uniform(0.6, 1.4), chord_gain=style.chord_gain * rng.uniform(0.6, 1.4),
        chord_drive=1.0 + (style.chord_drive - 1.0) * rng.uniform(0.5, 1.5), noise=style.noise * rng.uniform(0.5, 2.0),
        chord_rolloff=style.chord_rolloff * rng.uniform(0.8, 1.25))
    n = int(round(duration * sr))
    step = 60.0 / knobs.bpm / 4.0
    num_steps = int(np.ceil(duration / step)) + 1
    k = np.arange(num_steps)
    swing = np.where(k % 2 == 1, style.swing * step / 3.0, 0.0)
    # Loose timing: up to a tenth of a beat (standard deviation) of random shift per step.
    jitter = rng.normal(0.0, 0.1 * knobs.jitter * step * 4, size=num_steps)
    times = np.clip(k * step + swing + jitter, 0.0, None)
    step_samples = (times * sr).astype(np.int64)

    # Drums: hits placed by slice-adding one-shots (a few hundred hits; cheaper than convolution).
    drums = np.zeros(n + sr, np.float32)
    shots = _one_shots(style, sr, rng)
    for name in ("kick", "snare", "hat", "ride", "tom"):
        pattern = np.asarray(getattr(style, name))
        if not pattern.any():
            continue
        # Irregular playing also blurs the pattern towards hits at random steps.
        pattern = (1.0 - 0.9 * knobs.jitter) * pattern + 0.9 * knobs.jitter * pattern.mean()
        probs = np.clip(pattern[k % 16] * knobs.density, 0.0, 1.0)
        hits = np.nonzero(rng.random(num_steps) < probs)[0]
        vel = rng.uniform(0.6, 1.0, size=hits.size).astype(np.float32)
        shot = shots[name]
        for h, v in zip(step_samples[hits], vel):
            if h < n:
                drums[h:h + shot.size] += v * shot
    drums = drums[:n] * style.drum_gain

    # Harmony.
    if style.scale == "hijaz":
        mode = "hijaz"
    else:
        mode = "major" if knobs.major else "minor"
    scale = np.array(_SCALES[mode])
    progs = _PROGRESSIONS[mode]
    prog = progs[rng.integers(len(progs))]
    if style.scale == "blues":
        prog = (0, 3, 0, 4)
    tonic = 12 * (style.chord_octave + 1) + knobs.key + knobs.register

    def degree_pitch(deg):
        deg = np.asarray(deg)
        return tonic + scale[deg % 7] + 12 * (deg // 7)

    bar_steps = 16 * style.bars_per_chord
    chord_deg = np.array(prog)[(k // bar_steps) % len(prog)]
    tones = [0, 2, 4] + ([6] if style.sevenths else [])
    chord_pitches = [degree_pitch(chord_deg + t) for t in tones]
    if style.scale == "blues":
        # Dominant seventh chords: major third and flat seventh over each root.
        roots = degree_pitch(chord_deg)
        chord_pitches = [roots, roots + 4, roots + 7, roots + 10]
    rolloff = style.chord_rolloff * (1.5 - knobs.brightness)
    table = _wavetable(style.chord_harmonics, rolloff, style.chord_odd)
    attacks = k % style.chord_rhythm == 0
    if style.arpeggio:
        idx = k % len(chord_pitches)
        pitch = np.choose(idx, chord_pitches)
        harmony = _render_line(step_samples, _midi_hz(pitch), n, sr, table, style.chord_decay)
    else:
        harmony = np.zeros(n, np.float32)
        for pitches in chord_pitches:
            harmony += _render_line(step_samples[attacks], _midi_hz(pitches[attacks]), n, sr, table,
                                    style.chord_decay)
        harmony /= len(chord_pitches)
    if style.chord_drive > 1.0:
        harmony = np.tanh(style.chord_drive * harmony) / np.tanh(style.chord_drive)
    mix = drums + style.chord_gain * harmony

    # Bass.
    bass_root = degree_pitch(chord_deg) - 12 * (style.chord_octave - 2)
    bass_table = _wavetable(style.bass_harmonics, 1.0)
    if style.bass in ("root8", "root4"):
        every = 2 if style.bass == "root8" else 4
        sel = k % every == 0
        mix += 0.5 * _render_line(step_samples[sel], _midi_hz(bass_root[sel]), n, sr, bass_table, 0.3)
    elif style.bass == "walk":
        sel = k % 4 == 0
        walk = bass_root[sel] + scale[rng.integers(0, 7, size=sel.sum())] * (rng.random(sel.sum()) < 0.7)
        mix += 0.5 * _render_line(step_samples[sel], _midi_hz(walk), n, sr, bass_table, 0.4)
    elif style.bass == "sub":
        sel = k % 8 == 0
        mix += 0.7 * _render_line(step_samples[sel], _midi_hz(bass_root[sel]), n, sr, _wavetable(1, 1.0), 1.2)

    # Lead melody: random walk on the scale, with rests.
    if style.lead != "none":
        sel = np.nonzero(k % style.lead_rate == 0)[0]
        steps_ = np.cumsum(rng.integers(-2, 3, size=sel.size))
        deg = np.clip(steps_, -5, 12) + 7 * (style.lead_octave - style.chord_octave)
        pitch = degree_pitch(deg)
        lead_table, decay, vib = {
            "sine": (_wavetable(3, 2.0), 0.6, 0.006),
            "square": (_wavetable(15, 1.0, odd=True), 0.25, 0.0),
            "string": (_wavetable(14, 1.2), 2.0, 0.008),
            "pluck": (_wavetable(10, 1.5), 0.25, 0.0),
        }[style.lead]
        rest = rng.random(sel.size) < 0.15
        freqs = np.where(rest, 1.0, _midi_hz(pitch))
        mix += 0.3 * _render_line(step_samples[sel], freqs, n, sr, lead_table, decay, vibrato=vib)

    if style.drone:
        drone_f = _midi_hz(tonic - 12)
        tt = np.arange(n) / sr
        mix += 0.15 * (np.sin(2 * np.pi * drone_f * tt) + 0.5 * np.sin(4 * np.pi * drone_f * tt)).astype(np.float32)
    if style.tremolo:
        tt = np.arange(n) / sr
        mix *= (1.0 - style.tremolo * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * tt))).astype(np.float32)
    # Brightness is a spectral tilt: a gentle one-pole low-pass from 1 kHz (dark) to 16 kHz (bright).
    cutoff = 1000.0 * 2.0 ** (4.0 * knobs.brightness)
    if style.lowpass:
        cutoff = min(cutoff, style.lowpass)
    a = np.exp(-2 * np.pi * cutoff / sr)
    mix = lfilter([1 - a], [1, -a], mix).astype(np.float32)
    peak = np.max(np.abs(mix)) or 1.0
    mix = mix / peak
    noise = rng.standard_normal(n).astype(np.float32) * style.noise
    if style.crackle:
        pops = rng.random(n) < 20.0 / sr
        noise += pops * rng.uniform(-0.3, 0.3, size=n).astype(np.float32)
    mix = (mix + noise) * (0.9 * 10.0 ** (knobs.gain_db / 20.0))
    return np.clip(mix, -1.0, 1.0).astype(np.float32)
