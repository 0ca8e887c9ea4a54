"""What the router needs from a backend client, and nothing about A/B policies."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gateway.core.types import Framework, InferRequest, InferResponse


@runtime_checkable
class Upstream(Protocol):
    """A client for one backend (all its replicas), created once and pooled.

    Implementations translate every transport failure into a `gateway.core.errors` subclass
    at one boundary (`raise UpstreamTimeout(...) from exc`), never leak a grpc/httpx error.
    """

    framework: Framework

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        """Run `request` on one healthy replica; raise `UpstreamError` subclasses on failure."""
        ...

    async def ready(self, model: str) -> bool:
        """True when at least one replica serves `model`."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections and channels."""
        ...
