"""The transport-free data plane: the whole surface every ingress serves, computed once.

As Seldon MLServer's `DataPlane` (mlserver/handlers/dataplane.py): `live`, `ready`,
`model_ready`, `metadata`, `model_metadata`, `infer`. The protocols (TF Serving REST and
gRPC, Open Inference Protocol REST and gRPC) only translate their wire form to these calls
and the answers back; readiness, model metadata and version resolution are decided here.

What happens to each upstream call (arm statistics, the prediction log, upstream metrics)
is the router's outcome and its observers' business (`gateway.core.outcome`); `infer`
counts what the client saw, per protocol, and the edge (`gateway.edge.boundary`) counts
the failures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Catalog, ModelInfo, TensorInfo
from gateway.codecs.oip_raw import datatype_of
from gateway.core.types import Framework, InferRequest, InferResponse, TraceContext
from gateway.core.version import parse_version
from gateway.edge.drain import Drain
from gateway.routing.router import Router
from gateway.telemetry import tracing
from gateway.telemetry.metrics import GatewayMetrics

SERVER_NAME = "dualserve"
SERVER_VERSION = "0.1.0"
PLATFORM = "dualserve (tensorflow | pytorch)"

Version = int | str | None
"""A version as a protocol carries it: a number (TF Serving's gRPC `Int64Value`), text (a
URL segment, OIP's `version` field; '' = none: see `parse_version`), or None (the latest).
Text is parsed only once the model is known: an unknown model is NOT_FOUND whatever its
version says."""


@dataclass(frozen=True)
class Readiness:
    """The gateway's readiness: every model has a ready arm, and it is not draining.

    Attributes:
        draining: SIGTERM arrived (`gateway.edge.drain`): never ready again.
        models: model -> arm -> ready (an open breaker counts as not ready).
    """

    draining: bool
    models: dict[str, dict[Framework, bool]]

    @property
    def ready(self) -> bool:
        return not self.draining and bool(self.models) and all(map(any_ready, self.models.values()))


def any_ready(arms: dict[Framework, bool]) -> bool:
    """A model is ready when at least one of its arms is."""
    return any(arms.values())


@dataclass(frozen=True)
class ServerMetadata:
    """OIP's server metadata (KServe v2 "Server Metadata"); each protocol adds the
    extensions it serves."""

    name: str = SERVER_NAME
    version: str = SERVER_VERSION


@dataclass(frozen=True)
class ModelMetadata:
    """One model's metadata, at the version a request asked for.

    Attributes:
        name: the model.
        version: the version asked for, resolved (a number, a label's, or the latest).
        versions: every version the model has, ascending.
        platform: what serves it (OIP's `platform`).
        inputs: the serving signature's inputs (name, numpy dtype, shape; -1 = any size).
        outputs: its outputs.
    """

    name: str
    version: int
    versions: tuple[int, ...]
    platform: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def oip(self) -> dict[str, Any]:
        """OIP's model metadata object (KServe v2 "Model Metadata Response JSON Object":
        `name`, `versions` as text, `platform`, `inputs`/`outputs` of `name`, `datatype`,
        `shape`); the gRPC `ModelMetadataResponse` has the same fields."""
        return {
            "name": self.name,
            "versions": [str(v) for v in self.versions],
            "platform": self.platform,
            "inputs": _oip_tensors(self.inputs),
            "outputs": _oip_tensors(self.outputs),
        }


def _oip_tensors(tensors: tuple[TensorInfo, ...]) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "datatype": datatype_of(t.dtype), "shape": list(t.shape)} for t in tensors
    ]


class DataPlane:
    """What every ingress asks of the gateway.

    Args:
        router: routes predictions and knows each arm's readiness; its catalog knows
            the models.
        metrics: where answered requests are counted and timed.
        drain: the process's draining flag (a draining gateway is not ready).
    """

    def __init__(self, router: Router, metrics: GatewayMetrics, drain: Drain) -> None:
        self.router = router
        self.metrics = metrics
        self.drain = drain

    @property
    def catalog(self) -> Catalog:
        return self.router.catalog

    def live(self) -> bool:
        """The process answers (liveness: nothing else is asked)."""
        return True

    async def ready(self) -> bool:
        """Every model has a ready arm and the process is not draining (what `/readyz`,
        `/v2/health/ready`, OIP `ServerReady` and gRPC health answer)."""
        return (await self.readiness(stop_early=True)).ready

    async def readiness(self, stop_early: bool = False) -> Readiness:
        """Each model's arms' readiness, asked of the backends.

        Args:
            stop_early: ask only what the yes/no answer needs: nothing while draining,
                no model after the first without a ready arm.
        """
        draining = self.drain.draining
        models: dict[str, dict[Framework, bool]] = {}
        if draining and stop_early:
            return Readiness(draining, models)
        for model in self.catalog.names:
            arms = models[model] = await self.router.ready(model)
            if stop_early and not any_ready(arms):
                break
        return Readiness(draining, models)

    async def model_ready(self, model: str, version: Version = None) -> bool:
        """The model has a ready arm (the version is checked, not asked per arm).

        Raises:
            NotFound: an unknown model or version. BadRequest: a malformed version.
        """
        self._resolve(model, version, None)
        return any_ready(await self.router.ready(model))

    def metadata(self) -> ServerMetadata:
        return ServerMetadata()

    def model_metadata(
        self, model: str, version: Version = None, label: str | None = None
    ) -> ModelMetadata:
        """The model's metadata at `version` or `label` (TF Serving's version labels).

        Raises:
            NotFound: an unknown model or version. BadRequest: a malformed version or an
                unknown label (`ModelInfo.resolve_version`).
        """
        info, number = self._resolve(model, version, label)
        return ModelMetadata(
            name=info.name,
            version=number,
            versions=tuple(sorted(info.versions)),
            platform=PLATFORM,
            inputs=info.inputs,
            outputs=info.outputs,
        )

    def _resolve(self, model: str, version: Version, label: str | None) -> tuple[ModelInfo, int]:
        info = self.catalog.get(model)  # first: an unknown model is 404 whatever the version
        number = parse_version(version) if isinstance(version, str) else version
        return info, info.resolve_version(number, label)

    async def infer(
        self, request: InferRequest, protocol: str, strict_dtype: bool = False
    ) -> InferResponse:
        """Route one request; count it and time the gateway's own share of it.

        Failures are counted by the edge (`gateway.edge.boundary.Edge.error`), which
        also sees the errors raised while decoding, before this is called."""
        started = time.perf_counter()
        trace = request.trace
        if trace is None or trace.span is None:  # tracing off: no span, no frame more
            response = await self.router.infer(request, strict_dtype)
        else:
            response = await self._routed_in_span(request, strict_dtype, trace)
        total = time.perf_counter() - started
        response.timings["total"] = total
        response.request_id = request.request_id
        upstream = response.timings.get("upstream", 0.0)
        self.metrics.answered(request.model, response.backend, protocol, total, upstream)
        return response

    async def _routed_in_span(
        self, request: InferRequest, strict_dtype: bool, trace: TraceContext
    ) -> InferResponse:
        """`Router.infer` inside a `route` span under the ingress's (tracing on); the router
        puts its decision on it, the upstream attempts hang under it."""
        span = tracing.start_internal(trace, "route", {"dualserve.model": request.model})
        request.trace = tracing.child(trace, span)
        try:
            response = await self.router.infer(request, strict_dtype)
        except BaseException as exc:
            tracing.end(span, exc)
            raise
        answered = {
            "dualserve.answered_by": response.backend,
            "dualserve.version": response.version,
            "dualserve.failover": response.failover,
        }
        tracing.end(span, None, answered)
        return response
