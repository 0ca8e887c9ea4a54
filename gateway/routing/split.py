"""Weighted, sticky arm assignment by consistent hashing.

A routing key hashes to a point in [0, 1); the arms own consecutive intervals of that
line in a fixed order, sized by their weights. Moving the split from 90/10 to 80/20
only moves the keys between 0.8 and 0.9: exactly the users the change must move.
"""

from __future__ import annotations

import hashlib
import random

from gateway.core.types import FRAMEWORKS, Framework


def key_point(key: str) -> float:
    """A stable point in [0, 1) for `key` (blake2b, independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def key_hash(key: str) -> str:
    """A short, non-reversible form of a routing key, for logs and records."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def arm_at(point: float, weights: dict[Framework, float]) -> Framework:
    """The arm whose interval holds `point`."""
    total = sum(weights.get(arm, 0.0) for arm in FRAMEWORKS)
    edge = 0.0
    for arm in FRAMEWORKS:
        edge += weights.get(arm, 0.0) / total
        if point < edge:
            return arm
    return max(FRAMEWORKS, key=lambda arm: weights.get(arm, 0.0))


def choose_arm(
    weights: dict[Framework, float], key: str | None, sticky: bool, rng: random.Random
) -> Framework:
    """Sticky requests with a key always land on the same arm; the rest are drawn at random."""
    point = key_point(key) if sticky and key else rng.random()
    return arm_at(point, weights)
