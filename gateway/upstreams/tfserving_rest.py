"""TF Serving over REST: `POST /v1/models/{model}[/versions/{v}|/labels/{l}]:predict`.

Columnar JSON both ways. TF Serving's REST answer does not say which version ran, so the
reported version is the one asked for, else the model's default.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import orjson

from gateway.errors import GatewayError
from gateway.types import Framework, InferRequest, InferResponse
from gateway.upstreams.bodies import columnar_json, columnar_outputs, select_outputs
from gateway.upstreams.calls import call_timeout, version_for
from gateway.upstreams.failures import Target
from gateway.upstreams.replicas import ReplicaPool
from gateway.upstreams.rest_session import LazySession, fetch

_JSON = {"Content-Type": "application/json"}


class TFServingRestUpstream:
    """TF Serving's REST API on every replica.

    Args:
        base_urls: `http://host:port` of each replica's REST port.
        timeout_s: the longest any call may take (a caller's shorter deadline wins).
        max_connections: pooled keep-alive connections per replica.
        unhealthy_for_s: how long a replica that failed to connect is skipped.
        default_versions: per model, the version reported when the request names none.
    """

    framework: Framework = "tensorflow"

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        timeout_s: float = 5.0,
        max_connections: int = 64,
        unhealthy_for_s: float = 2.0,
        default_versions: Mapping[str, int] | None = None,
    ) -> None:
        urls = [url.rstrip("/") for url in base_urls]
        self.replicas = ReplicaPool(self.framework, urls, unhealthy_for_s)
        self.session = LazySession(max_connections, len(urls), timeout_s)
        self.timeout_s = timeout_s
        self.default_versions = dict(default_versions or {})

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        target = Target(self.framework, request.model, request.version, request.version_label)
        body = columnar_json(request.inputs, request.parameters.get("signature_name"))
        path = predict_path(request)

        async def attempt(base: str, left: float) -> bytes:
            return await fetch(self.session.get(), "POST", base + path, target, left, body, _JSON)

        started = time.perf_counter()
        answer = await self.replicas.call(attempt, call_timeout(timeout, self.timeout_s))
        elapsed = time.perf_counter() - started
        outputs = columnar_outputs(answer, request.outputs, target)
        return InferResponse(
            model=request.model,
            version=version_for(request, self.default_versions),
            backend=self.framework,
            outputs=select_outputs(outputs, request.outputs, target),
            request_id=request.request_id,
            timings={"upstream": elapsed},
        )

    async def ready(self, model: str) -> bool:
        """True when some replica's `GET /v1/models/{model}` lists an AVAILABLE version."""
        target = Target(self.framework, model)
        for base in self.replicas.replicas:
            url = f"{base}/v1/models/{quote(model, safe='')}"
            try:
                answer = await fetch(self.session.get(), "GET", url, target, self.timeout_s)
            except GatewayError:
                continue
            if _any_available(answer):
                return True
        return False

    async def aclose(self) -> None:
        await self.session.aclose()


def predict_path(request: InferRequest) -> str:
    """`/v1/models/{m}[/versions/{v}|/labels/{l}]:predict` for a request."""
    path = f"/v1/models/{quote(request.model, safe='')}"
    if request.version is not None:
        path += f"/versions/{request.version}"
    elif request.version_label:
        path += f"/labels/{quote(request.version_label, safe='')}"
    return path + ":predict"


def _any_available(answer: bytes) -> bool:
    try:
        statuses = orjson.loads(answer).get("model_version_status", [])
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return any(isinstance(s, dict) and s.get("state") == "AVAILABLE" for s in statuses)
