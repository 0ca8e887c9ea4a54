"""Small rules every client applies the same way: deadlines and reported versions."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.types import InferRequest


def call_timeout(timeout: float, limit_s: float) -> float:
    """The caller's deadline, capped by the backend's configured `timeout_s`."""
    return min(timeout, limit_s)


def version_for(request: InferRequest, default_versions: Mapping[str, int]) -> int:
    """The version that answered when the backend does not say: the one asked for, else
    the model's default (0 when unknown, e.g. only a label was given)."""
    if request.version is not None:
        return request.version
    return int(default_versions.get(request.model, 0))
