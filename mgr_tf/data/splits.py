"""Deterministic stratified selections: validation splits and cross-validation folds.

One algorithm everywhere: a stratum (a class, or a quantile bin of an emotion target) gets a share of the
selection in proportion to its size, rounded by largest remainders (ties: larger stratum, then first
seen); within a stratum, members are sorted by id and drawn with a seeded permutation.

Users: the data pipeline's validation split and cross-validation folds (`stratified_subset`,
`stratified_folds`), and the test split that `mgr_tf.ingest` and `mgr_tf.synth` write
(`stratified_split`, the same draw with a fraction and at least one member per class).
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np


def _quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder shares of `total` in proportion to `sizes`."""
    exact = total * sizes / max(int(sizes.sum()), 1)
    quota = np.floor(exact).astype(int)
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quota[i]), -sizes[i], i))
    for i in order[: total - int(quota.sum())]:
        quota[i] += 1
    return quota


def stratified_subset(ids: Sequence[str], strata: Sequence[Hashable], count: int, seed: int) -> list[bool]:
    """Which of `ids` form a stratified, seeded subset of `count` members.

    Args:
        ids: member ids (unique).
        strata: the stratum of each member.
        count: subset size.
        seed: seed of the draws.

    Returns:
        One flag per id, True for the chosen.
    """
    keys, sizes = _strata_sizes(strata)
    return _draw(ids, strata, keys, _quotas(sizes, count), seed)


def stratified_split(ids: Sequence[str], strata: Sequence[Hashable], fraction: float, seed: int, *,
                     min_per_stratum: int = 0) -> list[bool]:
    """Which of `ids` form a stratified, seeded share `fraction` of them (e.g. the test split).

    The share is round(fraction * N) members, divided among strata by largest remainders and drawn as
    `stratified_subset` draws them, so with `min_per_stratum=0` the result equals
    `stratified_subset(ids, strata, round(fraction * N), seed)`.

    Args:
        ids: member ids (unique).
        strata: the stratum of each member.
        fraction: share to choose, in [0, 1); 0 chooses none.
        seed: seed of the draws.
        min_per_stratum: with a positive fraction, every stratum of two or more members gets at least
            this many (so that small datasets still have every class on both sides) and keeps at least
            one member out; this may take the total above round(fraction * N).

    Returns:
        One flag per id, True for the chosen.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    keys, sizes = _strata_sizes(strata)
    quotas = _quotas(sizes, int(round(fraction * len(ids))))
    if min_per_stratum > 0 and fraction > 0:
        quotas = np.where(sizes >= 2, np.clip(quotas, np.minimum(min_per_stratum, sizes - 1), sizes - 1), quotas)
    return _draw(ids, strata, keys, quotas, seed)


def _strata_sizes(strata: Sequence[Hashable]) -> tuple[list, np.ndarray]:
    """(sorted distinct strata, their sizes)."""
    strata_arr = np.asarray(strata)
    keys = sorted(set(strata_arr.tolist()))
    return keys, np.array([int((strata_arr == k).sum()) for k in keys], dtype=int)


def _draw(ids: Sequence[str], strata: Sequence[Hashable], keys: list, quotas: np.ndarray, seed: int) -> list[bool]:
    """Flags `quotas[i]` members of stratum `keys[i]`: a seeded permutation of its members sorted by id."""
    ids_arr = np.asarray(ids)
    strata_arr = np.asarray(strata)
    chosen = np.zeros(len(ids_arr), bool)
    rng = np.random.default_rng(seed)
    for key, quota in zip(keys, quotas):
        members = np.flatnonzero(strata_arr == key)
        members = members[np.argsort(ids_arr[members], kind="stable")]
        chosen[members[rng.permutation(len(members))[:quota]]] = True
    return chosen.tolist()


def stratified_folds(ids: Sequence[str], strata: Sequence[Hashable], folds: int, seed: int) -> list[int]:
    """The fold (0..folds-1) of each id: every stratum is dealt round-robin over the folds after a seeded shuffle.

    Fold sizes differ by at most one per stratum, and the same arguments give the same folds.

    Args:
        ids: member ids (unique).
        strata: the stratum of each member.
        folds: number of folds (>= 2).
        seed: seed of the shuffle.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    ids_arr = np.asarray(ids)
    strata_arr = np.asarray(strata)
    fold_of = np.zeros(len(ids_arr), int)
    rng = np.random.default_rng(seed)
    offset = 0
    for key in sorted(set(strata_arr.tolist())):
        members = np.flatnonzero(strata_arr == key)
        members = members[np.argsort(ids_arr[members], kind="stable")]
        members = members[rng.permutation(len(members))]
        # Continue the round-robin across strata so small strata do not all land in fold 0.
        fold_of[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold_of.tolist()
