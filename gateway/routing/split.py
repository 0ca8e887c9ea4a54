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


def arm_at(point: float, weights: Mapping[str, float], order: Sequence[str] | None = None) -> str:
    """The arm whose interval holds `point` (arms in `order`, default `arm_order`)."""
    names = arm_order(weights) if order is None else [n for n in order if n in weights]
    total = sum(weights[name] for name in names)
    edge = 0.0
    for name in names:
        edge += weights[name] / total
        if point < edge:
            return name
    return max(names, key=lambda name: weights[name])  # rounding left `point` past the end


def choose_arm(
    weights: Mapping[str, float],
    key: str | None,
    sticky: bool,
    rng: random.Random,
    order: Sequence[str] | None = None,
) -> str:
    """Sticky requests with a key always land on the same arm; the rest are drawn at random."""
    point = key_point(key) if sticky and key else rng.random()
    return arm_at(point, weights, order)
