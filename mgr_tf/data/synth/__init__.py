"""The embedded default corpus: music synthesised per genre and emotion, in the published layout (`corpus`)."""

DEFAULT_CLIPS = 320
DEFAULT_DURATION = 30.0
