"""TorchServe over REST: `POST /predictions/{model}[/{version}]` with a tensor frame.

The dualserve handler answers a tensor frame with one of the named outputs, so tensors
cross without JSON. TorchServe does not report the version that ran.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from backends.torchserve.tensor_frames import CONTENT_TYPE as FRAME
from gateway.errors import GatewayError
from gateway.types import Framework, InferRequest, InferResponse
from gateway.upstreams.bodies import frame_body, frame_outputs, select_outputs
from gateway.upstreams.calls import call_timeout, version_for
from gateway.upstreams.failures import Target
from gateway.upstreams.replicas import ReplicaPool
from gateway.upstreams.rest_session import LazySession, fetch
from gateway.upstreams.torchserve_token import TokenSource


class TorchServeRestUpstream:
    """TorchServe's inference API on every replica.

    Args:
        base_urls: `http://host:port` of each replica's inference port.
        token: the inference key's source (`TokenSource()` = no authorization).
        timeout_s: the longest any call may take (a caller's shorter deadline wins).
        max_connections: pooled keep-alive connections per replica.
        unhealthy_for_s: how long a replica that failed to connect is skipped.
        default_versions: per model, the version reported when the request names none.
    """

    framework: Framework = "pytorch"

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        token: TokenSource | None = None,
        timeout_s: float = 5.0,
        max_connections: int = 64,
        unhealthy_for_s: float = 2.0,
        default_versions: Mapping[str, int] | None = None,
    ) -> None:
        urls = [url.rstrip("/") for url in base_urls]
        self.replicas = ReplicaPool(self.framework, urls, unhealthy_for_s)
        self.session = LazySession(max_connections, len(urls), timeout_s)
        self.token = token or TokenSource()
        self.timeout_s = timeout_s
        self.default_versions = dict(default_versions or {})

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        target = Target(self.framework, request.model, request.version, request.version_label)
        body = frame_body(request)
        path = predictions_path(request.model, request.version)
        headers = {
            "Content-Type": FRAME,
            "X-Request-Id": request.request_id,
            **self.token.headers(),
        }

        async def attempt(base: str, left: float) -> bytes:
            return await fetch(self.session.get(), "POST", base + path, target, left, body, headers)

        started = time.perf_counter()
        answer = await self.replicas.call(attempt, call_timeout(timeout, self.timeout_s))
        elapsed = time.perf_counter() - started
        outputs = frame_outputs(answer, target)
        return InferResponse(
            model=request.model,
            version=version_for(request, self.default_versions),
            backend=self.framework,
            outputs=select_outputs(outputs, request.outputs, target),
            request_id=request.request_id,
            timings={"upstream": elapsed},
        )

    async def ready(self, model: str) -> bool:
        """True when some replica's `GET /ping` says Healthy (the server, not per model)."""
        target = Target(self.framework, model)
        for base in self.replicas.replicas:
            try:
                answer = await fetch(
                    self.session.get(), "GET", f"{base}/ping", target, self.timeout_s,
                    headers=self.token.headers(),
                )  # fmt: skip
            except GatewayError:
                continue
            if b"Healthy" in answer:
                return True
        return False

    async def aclose(self) -> None:
        await self.session.aclose()


def predictions_path(model: str, version: int | None) -> str:
    path = f"/predictions/{quote(model, safe='')}"
    return path if version is None else f"{path}/{version}"
