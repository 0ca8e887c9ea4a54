"""Weighted, sticky arm assignment by consistent hashing, for two arms or more.

A routing key hashes to a point in [0, 1); the arms own consecutive intervals of that
line in a fixed order (the policy's arms, as configured), sized by their weights. Moving
the split from 90/10 to 80/20 only moves the keys between 0.8 and 0.9: exactly the users
the change must move. With n arms, a change between two neighbours in that order moves
only the keys between them; a change between arms further apart also shifts the arms
in between by the same amount (each of them keeps all but that amount of its users).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence

from gateway.core.types import FRAMEWORKS


def key_point(key: str) -> float:
    """A stable point in [0, 1) for `key` (blake2b, independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def key_hash(key: str) -> str:
    """A short, non-reversible form of a routing key, for logs and records."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def arm_order(weights: Mapping[str, float]) -> list[str]:
    """The default order: the frameworks' arms first (`tensorflow`, `pytorch`, as before
    arms had names), then the other arms as given."""
    first = [fw for fw in FRAMEWORKS if fw in weights]
    return [*first, *(name for name in weights if name not in FRAMEWORKS)]


Bounds = tuple[tuple[float, str], ...]  # (upper edge, arm) per arm, rising to 1


def split_bounds(weights: Mapping[str, float], order: Sequence[str] | None = None) -> Bounds:
    """Each arm's interval's upper edge, arms in `order` (default `arm_order`); the last
    arm with a share ends at 1.0 exactly, so rounding leaves no point past the end.

    Raises:
        ValueError: no arm has a positive weight.
    """
    names = arm_order(weights) if order is None else [n for n in order if n in weights]
    total, edge, bounds = sum(weights[name] for name in names), 0.0, []
    if total <= 0:
        raise ValueError("weights: no arm has a positive share")
    for name in names:
        edge += weights[name] / total
        bounds.append((edge, name))
    last = max(i for i, name in enumerate(names) if weights[name] > 0)
    bounds[last] = (1.0, names[last])
    return tuple(bounds[: last + 1])


_CACHE_SIZE = 1024
_bounds: dict[int, tuple[Mapping[str, float], Mapping[str, object], Bounds]] = {}


def policy_bounds(weights: Mapping[str, float], arms: Mapping[str, object]) -> Bounds:
    """`split_bounds(weights, list(arms))`, computed once per pair of (immutable in
    practice) `weights` and `arms` objects a policy holds: a policy is never changed in
    place, a new one brings new objects (the entry, keyed by identity, holds them, so an
    id is not reused while it is cached). Saves ~1 us per request (measured, decide())."""
    entry = _bounds.get(id(weights))
    if entry is not None and entry[0] is weights and entry[1] is arms:
        return entry[2]
    if len(_bounds) >= _CACHE_SIZE:  # policies re-read many times: start again
        _bounds.clear()
    bounds = split_bounds(weights, list(arms))
    _bounds[id(weights)] = (weights, arms, bounds)
    return bounds


def arm_at(point: float, bounds: Bounds) -> str:
    """The arm whose interval holds `point` in [0, 1)."""
    for edge, name in bounds:
        if point < edge:
            return name
    return bounds[-1][1]


def choose_arm(
    weights: Mapping[str, float],
    key: str | None,
    sticky: bool,
    rng: random.Random,
    order: Sequence[str] | None = None,
) -> str:
    """Sticky requests with a key always land on the same arm; the rest are drawn at random."""
    point = key_point(key) if sticky and key else rng.random()
    return arm_at(point, split_bounds(weights, order))
