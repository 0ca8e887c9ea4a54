"""Which requests are captured: a share, sticky by routing key.

A request is kept when a hash of (model, routing key) falls below the model's share, so
every request of one key is kept or none is (whole users, as the split keeps them on one
arm); a request without a key is drawn by its request id. The hash is salted with
`capture` so the kept keys are independent of the arm the split gives them
(`gateway.routing.split` hashes the bare key).
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def unit_draw(model: str, key: str) -> float:
    """A uniform draw in [0, 1) fixed by (model, key): blake2b-64 / 2**64."""
    digest = hashlib.blake2b(f"capture\0{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def keep(share: float, model: str, routing_key: str | None, request_id: str) -> bool:
    """True when this request is captured at `share` (0..1)."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    return unit_draw(model, routing_key if routing_key is not None else request_id) < share
