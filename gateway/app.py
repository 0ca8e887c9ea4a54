"""`create_app(settings)`: wires the gateway; nothing happens at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import admin
from gateway.capture.build import build_capture
from gateway.catalog import Catalog
from gateway.context import GatewayContext
from gateway.control.catalog_follower import build_follower
from gateway.control.database import open_database
from gateway.control.plane import ControlPlane
from gateway.core.errors import GatewayError, NotFound
from gateway.core.outcome import fan_out
from gateway.core.types import Framework
from gateway.dataplane import DataPlane
from gateway.edge.admission import Admission
from gateway.edge.auth import Authenticator
from gateway.edge.boundary import Edge
from gateway.edge.drain import Drain, hold_exit_signals
from gateway.experiments.service import ExperimentService
from gateway.experiments.specs import data_dir
from gateway.experiments.stats.live import ExperimentStats
from gateway.protocols.rest import feedback as feedback_rest
from gateway.protocols.rest import tfserving as tfserving_rest
from gateway.protocols.rest import v2 as v2_rest
from gateway.protocols.rest import v2_extensions
from gateway.protocols.rest.front_door import GatewayApp
from gateway.protocols.rest.head import serve_head
from gateway.protocols.rest.http import (
    HEADER_BACKEND,
    HEADER_FAILOVER,
    HEADER_REQUEST_ID,
    HEADER_ROUTING_KEY,
    HEADER_VERSION,
    gateway_error_handler,
    json_response,
    unexpected_error_handler,
)
from gateway.protocols.rest.methods import allowed_methods
from gateway.protocols.rest.openapi import document as openapi_document
from gateway.protocols.rest.openapi import operation
from gateway.protocols.rest.schemas import HealthResponse, ReadinessResponse
from gateway.routing.policy_store import PolicyStore
from gateway.routing.router import Backend, Router
from gateway.routing.shadow import ShadowMirror
from gateway.settings import GatewaySettings
from gateway.telemetry import tracing
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.model_stats import ModelStatistics
from gateway.telemetry.observers import metrics_observer, shadow_drops
from gateway.upstreams.base import Upstream
from gateway.upstreams.limited import LimitedUpstream

if TYPE_CHECKING:
    from gateway.protocols.grpc.server import GrpcIngress


def build_context(
    settings: GatewaySettings, upstreams: Mapping[Framework, Upstream] | None = None
) -> GatewayContext:
    """Every object of one gateway, wired here and nowhere else; upstreams are injectable
    for tests. The router emits one outcome per upstream call; metrics, live statistics
    and the prediction log observe it. Routing policy and experiments' state live in the
    experiments database, followed through one control plane."""
    catalog = Catalog.from_store(settings.model_store, settings.limits, settings.version_labels)
    injected = upstreams is not None  # tests' fakes: no backend to follow
    servers: dict[Backend, Upstream] = {}
    if upstreams is None:
        from gateway.upstreams.factory import build_server_upstreams, build_upstreams

        upstreams, servers = build_upstreams(settings), build_server_upstreams(settings)
    limits = settings.admission
    upstreams = {
        arm: LimitedUpstream(upstream, limits.upstream_max_in_flight)
        for arm, upstream in upstreams.items()
    }
    servers = {
        key: LimitedUpstream(upstream, limits.upstream_max_in_flight)
        for key, upstream in servers.items()
    }
    metrics, stats, exp = GatewayMetrics(), ExperimentStats(), settings.experiments
    control = ControlPlane(
        lambda: open_database(exp.database_url, data_dir(exp, settings.config_file))
    )
    configured = {model: settings.policy(model) for model in catalog.names}
    source = str(settings.config_file) if settings.config_file else "gateway settings"
    policies = PolicyStore(configured, control, configured_by=source)
    experiments = ExperimentService(
        exp, catalog, control, policies, settings.config_file, metrics.log_health,
        workers=settings.workers,
    )  # fmt: skip
    metrics.before_render(experiments.update_health)
    mirror = ShadowMirror(
        settings.shadow_queue_size, on_dropped=[stats.dropped, shadow_drops(metrics)]
    )
    model_stats = ModelStatistics(
        lambda r: catalog.get(r.model).resolve_version(r.version, r.version_label)
    )
    capture = build_capture(settings, catalog.names, metrics)
    observers = [metrics_observer(metrics), stats.observe, experiments.observe, model_stats.observe]
    emit = fan_out([*observers, capture.observe] if capture is not None else observers)
    router = Router(
        catalog, upstreams, settings, policies, emit, mirror.submit, server_upstreams=servers
    )
    admission, drain = Admission(limits.max_in_flight, limits.retry_after_s), Drain()
    return GatewayContext(
        settings=settings, catalog=catalog, router=router,
        dataplane=DataPlane(router, metrics, drain), metrics=metrics,
        auth=Authenticator(settings.auth, settings.config_file), experiments=experiments,
        control=control, policies=policies, stats=stats, mirror=mirror,
        edge=Edge(admission, metrics, lambda: catalog.names), drain=drain,
        model_stats=model_stats,
        follower=build_follower(settings, catalog) if not injected else None,
        capture=capture,
    )  # fmt: skip


def create_app(
    settings: GatewaySettings, upstreams: Mapping[Framework, Upstream] | None = None
) -> FastAPI:
    tracing.configure(settings.tracing)  # before the ingresses: they pick their handlers once
    ctx = build_context(settings, upstreams)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.control.start()  # first: the routing policy comes from it
        if ctx.follower is not None:  # what the backends serve, before the first request
            await ctx.follower.start()
        ctx.mirror.start()
        await ctx.experiments.start()
        if ctx.capture is not None:
            ctx.capture.start()
        grpc_ingress = await _start_grpc(app, ctx)
        release_signals = hold_exit_signals(ctx.drain, ctx.settings.drain.delay_s)
        try:
            yield
        finally:
            release_signals()
            if grpc_ingress is not None:  # first: no new calls while the rest closes
                await grpc_ingress.stop()
            await _drain_shadow(ctx)
            await ctx.mirror.aclose()
            await ctx.experiments.aclose()  # after the mirror: its last records are logged
            if ctx.capture is not None:  # after the last outcome: every file closed whole
                await asyncio.to_thread(ctx.capture.close)
            await ctx.control.aclose()
            if ctx.follower is not None:
                await ctx.follower.aclose()
            for upstream in ctx.router.upstreams.values():
                await upstream.aclose()
            for lane in ctx.router.lanes.values():
                await lane.upstream.aclose()
            tracing.shutdown()  # last: the spans of the calls above are exported

    app = GatewayApp(title="dualserve gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = ctx
    app.include_router(tfserving_rest.router)
    app.include_router(v2_extensions.router)  # first: /v2/models/stats is no model's metadata
    app.include_router(v2_rest.router)
    app.include_router(admin.router)
    app.include_router(feedback_rest.router)
    _add_cors_or_fast_routes(app, settings)
    _add_operations_routes(app, ctx)
    for router in (tfserving_rest, v2_rest, v2_extensions, admin, app):
        serve_head(router.router)  # RFC 9110 §9.3.2: HEAD wherever GET is served
    app.add_exception_handler(GatewayError, gateway_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


CLIENT_HEADERS = (HEADER_BACKEND, HEADER_VERSION, HEADER_REQUEST_ID, HEADER_ROUTING_KEY)
TRACE_HEADERS = ("traceparent", "tracestate")  # W3C Trace Context (gateway.telemetry.tracing)


def _add_cors_or_fast_routes(app: GatewayApp, settings: GatewaySettings) -> None:
    """CORS only for the origins configured (none by default: browsers on other sites get
    no access). The fast path skips middleware, so with CORS on every route takes the
    ordinary one and carries the CORS headers."""
    app.add_fast_routes(tfserving_rest.router.routes, tfserving_rest.PROTOCOL)
    app.add_fast_routes(v2_rest.router.routes, v2_rest.PROTOCOL)
    if not settings.cors_origins:
        return
    app.direct = False
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "X-API-Key",
            *CLIENT_HEADERS,
            *TRACE_HEADERS,
        ],
        expose_headers=[*CLIENT_HEADERS, HEADER_FAILOVER, "traceparent"],
    )


async def _start_grpc(app: FastAPI, ctx: GatewayContext) -> GrpcIngress | None:
    """The gRPC ingress when `settings.grpc_port` is set; its bound port goes on
    `app.state.grpc_port` (None without one)."""
    app.state.grpc_port = None
    if ctx.settings.grpc_port is None:
        return None
    from gateway.protocols.grpc.server import start_grpc_ingress  # grpc server code only when used

    ingress = await start_grpc_ingress(ctx)
    app.state.grpc_port = ingress.port
    return ingress


async def _drain_shadow(ctx: GatewayContext) -> None:
    """Let queued mirror copies finish (bounded by the drain grace) before closing."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.mirror.drain(), ctx.settings.drain.grace_s)


_READYZ = operation(
    ReadinessResponse,
    extra={503: {"model": ReadinessResponse, "description": "a model has no ready arm"}},
)


def _add_operations_routes(app: FastAPI, ctx: GatewayContext) -> None:
    @app.get("/healthz", **operation(HealthResponse))
    async def healthz() -> Response:
        return json_response({"status": "alive"})

    @app.get("/readyz", **_READYZ)
    async def readyz() -> Response:
        report = await ctx.dataplane.readiness()
        body = {"ready": report.ready, "draining": report.draining, "models": report.models}
        return json_response(body, status=200 if report.ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the same `{"error": ...}` form, keeping the
    headers their cause carries (a 405's `Allow`, RFC 9110 §15.5.6)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return await gateway_error_handler(request, NotFound(f"no route for {request.url.path}"))
    error = GatewayError(str(exc.detail), headers=exc.headers)
    error.status = exc.status_code  # type: ignore[assignment]
    response = await gateway_error_handler(request, error)
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request.app.routes, request.scope))
    return response
