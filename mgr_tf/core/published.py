"""Facts of the published FMA-derived data: its genre vocabularies, the 20 -> 10 mapping, its regression targets.

Every published result on this data (see shared reference, section 1) merges the 20 FMA genres into 10 classes
and drops five of them; both vocabularies live here and nowhere else, with the three emotion targets of the
multitask release and report 2's fixed multitask weights.
"""

from __future__ import annotations

GENRES_20: tuple[str, ...] = (
    "Rock", "Psych-Rock", "Post-Rock", "Indie-Rock", "Psych-Folk",
    "Folk", "Metal", "Punk", "Post-Punk", "Trip-Hop",
    "Pop", "Electronic", "Chiptune", "Hip-Hop", "Classical",
    "Blues", "Jazz", "Soundtrack", "International", "Old-Time",
)

# None = the genre is dropped by the published mapping.
GENRE_MAP_20_TO_10: dict[str, str | None] = {
    "Rock": "Rock", "Psych-Rock": "Rock", "Post-Rock": "Rock", "Indie-Rock": None,
    "Psych-Folk": "Folk", "Folk": "Folk",
    "Metal": "Metal", "Punk": "Metal", "Post-Punk": None,
    "Trip-Hop": "Trip-Hop", "Pop": "Pop",
    "Electronic": "Electronic", "Chiptune": "Electronic",
    "Hip-Hop": "Hip-Hop", "Classical": "Classical", "Blues": "Blues", "Jazz": "Jazz",
    "Soundtrack": None, "International": None, "Old-Time": None,
}

# Order of first appearance in the mapping above.
GENRES_10: tuple[str, ...] = tuple(dict.fromkeys(g for g in GENRE_MAP_20_TO_10.values() if g))

EMOTIONS: tuple[str, ...] = ("valence", "energy", "danceability")

# Report 2's fixed multitask weights for (valence, energy, danceability).
PUBLISHED_WEIGHTS: dict[str, float] = {"valence": 1.5, "energy": 0.8, "danceability": 0.8}


def class_names(num_genres: int) -> tuple[str, ...]:
    """Returns the class names for a 10- or 20-class genre task.

    Args:
        num_genres: 10 (the published mapping) or 20 (the raw FMA genres).
    """
    if num_genres == 10:
        return GENRES_10
    if num_genres == 20:
        return GENRES_20
    raise ValueError(f"num_genres must be 10 or 20, got {num_genres}")


def map_index_table(num_genres: int) -> list[int]:
    """For each of the 20 raw genre indices, the target class index (-1 = dropped).

    Args:
        num_genres: 10 or 20.
    """
    if num_genres == 20:
        return list(range(len(GENRES_20)))
    names = class_names(num_genres)
    return [names.index(GENRE_MAP_20_TO_10[g]) if GENRE_MAP_20_TO_10[g] else -1 for g in GENRES_20]
