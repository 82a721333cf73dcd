"""Genre styles and per-clip knobs of the synthetic corpus (`mgr_tf.synth`), and the emotion targets.

Each of the 20 FMA genres has a `Style` (tempo range, drum pattern, harmony, timbre, distortion,
noise). Genres that the published 20 -> 10 mapping merges share a family (Rock / Psych-Rock /
Post-Rock, Metal / Punk, Folk / Psych-Folk, Electronic / Chiptune) and differ only in details, while
the ten mapped classes differ clearly. Every clip also draws `Knobs` (tempo, mode, loudness,
percussion density, brightness, timing regularity, register); for emotion clips, valence, energy and
danceability are fixed functions of the knobs plus small noise (`emotion_targets`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mgr_tf.core.published import GENRES_20


def _p(*steps: float) -> tuple[float, ...]:
    """A 16-step hit-probability pattern (one bar of sixteenth notes)."""
    assert len(steps) == 16
    return tuple(float(s) for s in steps)


_NONE = _p(*[0] * 16)
_BACKBEAT = _p(0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0)
_EIGHTHS = _p(*[0.95, 0] * 8)
_SIXTEENTHS = _p(*[0.9] * 16)


@dataclass(frozen=True)
class Style:
    """Generation settings of one genre.

    Args:
        tempo: BPM range.
        kick, snare, hat, ride, tom: 16-step hit probabilities of each drum.
        swing: delay of off-beat sixteenths (0 straight, 1 triplet feel).
        drum_gain: drum level relative to the instruments.
        tom_pitch: start pitch in Hz of the tuned hand drum / tom.
        chord_harmonics: harmonics of the chord instrument's wavetable.
        chord_rolloff: harmonic amplitude k ** -rolloff (lower = brighter).
        chord_odd: odd harmonics only (square-like, hollow).
        chord_rhythm: sixteenths between chord attacks (16 = once a bar).
        chord_decay: chord note decay time in seconds (long = sustained pad).
        chord_drive: distortion gain of the chord instrument (1 = clean).
        chord_gain: chord level.
        chord_octave: MIDI octave of the chord root.
        sevenths: add the seventh to every chord.
        arpeggio: play chords as sixteenth-note arpeggios instead of block chords.
        bass: "root8" (eighths), "root4" (quarters), "walk" (walking quarters), "sub" (held sine) or "none".
        bass_harmonics: harmonics of the bass wavetable.
        lead: "none", "sine" (voice-like, vibrato), "square", "string" (bowed, vibrato) or "pluck".
        lead_rate: sixteenths per lead note.
        lead_octave: MIDI octave of the lead.
        major_prob: chance that a clip is in a major key.
        scale: "diatonic", "blues" (dominant sevenths, I-IV-V) or "hijaz" (augmented second).
        bars_per_chord: bars each chord lasts.
        noise: background noise level.
        crackle: vinyl crackle.
        lowpass: one-pole low-pass cutoff in Hz applied to the mix (0 = none).
        tremolo: depth of a slow amplitude wobble (psychedelic).
        drone: a held tonic drone.
    """

    tempo: tuple[float, float] = (100.0, 130.0)
    kick: tuple[float, ...] = _NONE
    snare: tuple[float, ...] = _NONE
    hat: tuple[float, ...] = _NONE
    ride: tuple[float, ...] = _NONE
    tom: tuple[float, ...] = _NONE
    swing: float = 0.0
    drum_gain: float = 1.0
    tom_pitch: float = 180.0
    chord_harmonics: int = 12
    chord_rolloff: float = 1.0
    chord_odd: bool = False
    chord_rhythm: int = 16
    chord_decay: float = 1.0
    chord_drive: float = 1.0
    chord_gain: float = 0.5
    chord_octave: int = 4
    sevenths: bool = False
    arpeggio: bool = False
    bass: str = "root4"
    bass_harmonics: int = 4
    lead: str = "none"
    lead_rate: int = 4
    lead_octave: int = 5
    major_prob: float = 0.5
    scale: str = "diatonic"
    bars_per_chord: int = 1
    noise: float = 0.005
    crackle: bool = False
    lowpass: float = 0.0
    tremolo: float = 0.0
    drone: bool = False


_ROCK = Style(tempo=(105, 140), kick=_p(1, 0, 0, 0, 0, 0, 0, 0, 1, 0, .4, 0, 0, 0, 0, 0), snare=_BACKBEAT,
              hat=_EIGHTHS, chord_harmonics=20, chord_rolloff=0.9, chord_rhythm=2, chord_decay=0.35,
              chord_drive=4.0, chord_gain=0.5, chord_octave=3, bass="root8", bass_harmonics=6,
              major_prob=0.6, noise=0.01)
_METAL = dataclasses.replace(_ROCK, tempo=(150, 190), kick=_SIXTEENTHS, hat=_p(*[.9, 0] * 8), chord_drive=14.0,
                             chord_rolloff=0.6, chord_harmonics=28, chord_rhythm=1, chord_decay=0.12,
                             chord_octave=2, major_prob=0.1, noise=0.03, drum_gain=1.2)
_FOLK = Style(tempo=(80, 115), chord_harmonics=10, chord_rolloff=1.6, chord_rhythm=2, chord_decay=0.5,
              chord_gain=0.6, chord_octave=4, bass="root4", bass_harmonics=3, lead="pluck", lead_rate=4,
              major_prob=0.8, noise=0.003, drum_gain=0.5, tom=_p(1, 0, 0, 0, 0, 0, 0, 0, .3, 0, 0, 0, 0, 0, 0, 0),
              tom_pitch=110.0)
_ELECTRONIC = Style(tempo=(120, 132), kick=_p(*[1, 0, 0, 0] * 4), snare=_BACKBEAT,
                    hat=_p(*[.4, .4, 1, .4] * 4), chord_harmonics=24, chord_rolloff=1.0, chord_rhythm=16,
                    chord_decay=3.0, chord_gain=0.35, chord_octave=4, bass="root8", bass_harmonics=10,
                    major_prob=0.4, noise=0.002, drum_gain=1.3, lowpass=0.0)

STYLES: dict[str, Style] = {
    "Rock": _ROCK,
    "Psych-Rock": dataclasses.replace(_ROCK, tremolo=0.5, tempo=(95, 125), lead="sine", lead_rate=8,
                                      major_prob=0.45, drone=True),
    "Post-Rock": dataclasses.replace(_ROCK, tempo=(90, 120), chord_rhythm=1, chord_decay=0.6, chord_drive=2.5,
                                     bars_per_chord=2, major_prob=0.5, kick=_p(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
    "Indie-Rock": dataclasses.replace(_ROCK, chord_drive=2.0, lead="sine", lead_rate=4, tempo=(110, 135)),
    "Psych-Folk": dataclasses.replace(_FOLK, tremolo=0.5, drone=True, major_prob=0.5, lead="string",
                                      lead_rate=8),
    "Folk": _FOLK,
    "Metal": _METAL,
    "Punk": dataclasses.replace(_METAL, tempo=(165, 200), kick=_p(*[1, 0] * 8), chord_rhythm=2,
                                chord_drive=8.0, major_prob=0.6, chord_octave=3),
    "Post-Punk": dataclasses.replace(_ROCK, tempo=(130, 160), chord_drive=1.5, chord_rhythm=4, major_prob=0.15,
                                     bass="root8", bass_harmonics=14, chord_octave=4),
    "Trip-Hop": Style(tempo=(70, 92), kick=_p(1, 0, 0, 0, 0, 0, 0, .3, 0, 0, 1, 0, 0, 0, 0, 0), snare=_BACKBEAT,
                      hat=_p(*[.9, .5] * 8), swing=0.5, chord_harmonics=8, chord_rolloff=1.8, chord_rhythm=16,
                      chord_decay=2.5, chord_gain=0.4, chord_octave=3, bass="sub", major_prob=0.1,
                      noise=0.01, crackle=True, lowpass=2500.0, bars_per_chord=2, drum_gain=1.2),
    "Pop": Style(tempo=(100, 124), kick=_p(1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), snare=_BACKBEAT,
                 hat=_EIGHTHS, chord_harmonics=14, chord_rolloff=1.2, chord_rhythm=4, chord_decay=0.8,
                 chord_gain=0.4, chord_octave=4, bass="root8", bass_harmonics=4, lead="sine", lead_rate=2,
                 lead_octave=5, major_prob=0.9, noise=0.002),
    "Electronic": _ELECTRONIC,
    "Chiptune": dataclasses.replace(_ELECTRONIC, tempo=(140, 165), chord_odd=True, chord_rolloff=1.0,
                                    arpeggio=True, chord_decay=0.1, chord_octave=5, lead="square",
                                    lead_rate=2, lead_octave=6, bass_harmonics=15, major_prob=0.7),
    "Hip-Hop": Style(tempo=(84, 98), kick=_p(1, 0, 0, 0, 0, 0, 0, .5, 0, 0, 1, 0, 0, 0, 0, 0), snare=_BACKBEAT,
                     hat=_p(*[.95, 0] * 8), swing=0.4, drum_gain=1.6, chord_harmonics=6, chord_rolloff=1.4,
                     chord_rhythm=16, chord_decay=0.6, chord_gain=0.25, chord_octave=4, bass="sub",
                     major_prob=0.3, noise=0.004),
    "Classical": Style(tempo=(60, 100), chord_harmonics=16, chord_rolloff=1.3, chord_rhythm=16, chord_decay=4.0,
                       chord_gain=0.55, chord_octave=4, bass="root4", bass_harmonics=8, lead="string",
                       lead_rate=4, major_prob=0.6, noise=0.001, bars_per_chord=1),
    "Blues": Style(tempo=(70, 105), kick=_p(1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), snare=_BACKBEAT,
                   hat=_p(*[.9, 0, .6, 0] * 4), swing=1.0, chord_harmonics=14, chord_rolloff=1.1, chord_rhythm=2,
                   chord_decay=0.3, chord_drive=2.0, chord_gain=0.45, chord_octave=3, sevenths=True,
                   bass="root4", lead="pluck", lead_rate=2, scale="blues", major_prob=1.0, noise=0.006),
    "Jazz": Style(tempo=(110, 180), ride=_p(1, 0, 0, 0, 1, 0, 0, .8, 1, 0, 0, 0, 1, 0, 0, .8),
                  snare=_p(0, 0, .15, 0, 0, 0, .15, 0, 0, .15, 0, 0, 0, 0, .15, 0), swing=1.0, drum_gain=0.6,
                  chord_harmonics=6, chord_rolloff=2.0, chord_rhythm=8, chord_decay=0.9, chord_gain=0.4,
                  chord_octave=4, sevenths=True, bass="walk", bass_harmonics=3, lead="sine", lead_rate=2,
                  major_prob=0.5, noise=0.003),
    "Soundtrack": Style(tempo=(60, 90), tom=_p(1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, .5, 0), tom_pitch=70.0,
                        chord_harmonics=18, chord_rolloff=1.5, chord_rhythm=16, chord_decay=5.0, chord_gain=0.6,
                        chord_octave=3, bass="sub", lead="string", lead_rate=8, major_prob=0.3,
                        bars_per_chord=2, noise=0.002),
    "International": Style(tempo=(90, 130), tom=_p(1, 0, 0, 1, 0, 0, 1, 0, 1, 0, .5, 1, 0, 0, 1, 0),
                           tom_pitch=300.0, drum_gain=0.9, chord_harmonics=10, chord_rolloff=1.3,
                           chord_rhythm=16, chord_decay=2.0, chord_gain=0.3, bass="none", lead="pluck",
                           lead_rate=2, scale="hijaz", drone=True, major_prob=0.5),
    "Old-Time": Style(tempo=(110, 140), tom=_p(1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0), tom_pitch=90.0,
                      chord_harmonics=12, chord_rolloff=1.2, chord_rhythm=2, chord_decay=0.2, chord_gain=0.45,
                      chord_octave=4, bass="root4", lead="string", lead_rate=2, major_prob=0.95,
                      noise=0.015, lowpass=4000.0),
}
assert set(STYLES) == set(GENRES_20)
# Emotion clips use styles with drums, so that percussion density and timing regularity are audible.
# Styles whose harmony follows the mode (not Blues) and is not buried in distortion (not Metal/Punk).
EMOTION_STYLES = ("Rock", "Pop", "Electronic", "Hip-Hop", "Trip-Hop", "Jazz", "Indie-Rock", "Post-Punk",
                  "Chiptune")


@dataclass(frozen=True)
class Knobs:
    """Per-clip generation parameters on top of a `Style`.

    Args:
        bpm: tempo.
        major: major (True) or minor key.
        key: tonic as a MIDI pitch class offset (0 = C).
        gain_db: output level in dB below full scale.
        density: multiplier of the drum hit probabilities.
        brightness: 0 (dark) .. 1 (bright); scales the harmonic roll-off.
        jitter: 0 (machine-tight) .. 1 (loose) timing irregularity.
        register: transposition in semitones of harmony and lead.
    """

    bpm: float
    major: bool
    key: int
    gain_db: float
    density: float
    brightness: float
    jitter: float
    register: int


def genre_knobs(style: Style, rng: np.random.Generator) -> Knobs:
    return Knobs(bpm=float(rng.uniform(*style.tempo)), major=bool(rng.random() < style.major_prob),
                 key=int(rng.integers(12)), gain_db=float(rng.uniform(-12.0, 0.0)),
                 density=float(rng.uniform(0.7, 1.3)), brightness=float(rng.uniform(0.2, 0.8)),
                 jitter=float(rng.uniform(0.0, 0.3)), register=int(rng.integers(-3, 4)))


def emotion_knobs(rng: np.random.Generator) -> Knobs:
    return Knobs(bpm=float(rng.uniform(65.0, 180.0)), major=bool(rng.random() < 0.5), key=int(rng.integers(12)),
                 gain_db=float(rng.uniform(-24.0, 0.0)), density=float(rng.uniform(0.15, 1.6)),
                 brightness=float(rng.uniform(0.0, 1.0)), jitter=float(rng.uniform(0.0, 1.0)),
                 register=int(rng.integers(-12, 13)))


def emotion_targets(knobs: Knobs, rng: np.random.Generator) -> tuple[float, float, float]:
    """Valence, energy and danceability of a clip from its knobs, plus small noise, in [0, 1].

    Follows the broad findings of music-emotion research: energy (arousal) rises with loudness,
    percussion density and brightness; valence with major mode, tempo and pitch height;
    danceability with a steady beat near 120 BPM and more percussion.

    Args:
        knobs: the clip's generation parameters (from the emotion ranges).
        rng: noise source.
    """
    tempo = (knobs.bpm - 65.0) / 115.0
    loud = (knobs.gain_db + 24.0) / 24.0
    dens = (knobs.density - 0.15) / 1.45
    register = (knobs.register + 12) / 24.0
    near_120 = max(0.0, 1.0 - abs(knobs.bpm - 120.0) / 60.0)
    energy = 0.4 * loud + 0.35 * dens + 0.25 * knobs.brightness
    valence = 0.4 * float(knobs.major) + 0.3 * tempo + 0.3 * register
    dance = 0.4 * (1.0 - knobs.jitter) + 0.25 * near_120 + 0.35 * dens
    noise = rng.normal(0.0, 0.03, size=3)
    values = np.clip(np.array([valence, energy, dance]) + noise, 0.0, 1.0)
    return float(values[0]), float(values[1]), float(values[2])
