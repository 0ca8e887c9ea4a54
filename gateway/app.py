"""`create_app(settings)`: wires the gateway; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import admin
from gateway.auth import Authenticator
from gateway.catalog import Catalog
from gateway.context import GatewayContext
from gateway.dataplane import DataPlane
from gateway.errors import GatewayError, NotFound
from gateway.experiments.service import ExperimentService
from gateway.experiments.stats import ExperimentStats
from gateway.fast_path import GatewayApp
from gateway.metrics import GatewayMetrics
from gateway.protocols import feedback_rest, tfserving_rest, v2_rest
from gateway.protocols.http import (
    gateway_error_handler,
    json_response,
    unexpected_error_handler,
)
from gateway.routing.router import Router
from gateway.settings import GatewaySettings
from gateway.types import Framework
from gateway.upstreams.base import Upstream

if TYPE_CHECKING:
    from gateway.grpc_server import GrpcIngress


def build_context(
    settings: GatewaySettings, upstreams: Mapping[Framework, Upstream] | None = None
) -> GatewayContext:
    """Every object of one gateway; upstreams are injectable for tests."""
    catalog = Catalog.from_store(settings.model_store)
    if upstreams is None:
        from gateway.upstreams.factory import build_upstreams

        upstreams = build_upstreams(settings)
    metrics = GatewayMetrics()
    router = Router(catalog, upstreams, settings, ExperimentStats(), metrics)
    experiments = ExperimentService(settings.experiments, catalog, router, settings.config_file)
    router.shadow.on_call = experiments.observe_shadow
    return GatewayContext(
        settings=settings,
        catalog=catalog,
        router=router,
        dataplane=DataPlane(router, metrics, experiments),
        metrics=metrics,
        auth=Authenticator(settings.auth),
        experiments=experiments,
    )


def create_app(
    settings: GatewaySettings, upstreams: Mapping[Framework, Upstream] | None = None
) -> FastAPI:
    ctx = build_context(settings, upstreams)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.router.shadow.start()
        await ctx.experiments.start()
        grpc_ingress = await _start_grpc(app, ctx)
        try:
            yield
        finally:
            if grpc_ingress is not None:  # first: no new calls while the rest closes
                await grpc_ingress.stop()
            await ctx.router.shadow.aclose()
            await ctx.experiments.aclose()  # after the mirror: its last records are logged
            for upstream in ctx.router.upstreams.values():
                await upstream.aclose()

    app = GatewayApp(title="dualserve gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = ctx
    app.state.readiness = lambda: _all_models_ready(ctx)
    app.include_router(tfserving_rest.router)
    app.include_router(v2_rest.router)
    app.include_router(admin.router)
    app.include_router(feedback_rest.router)
    app.add_fast_routes([*tfserving_rest.router.routes, *v2_rest.router.routes])
    _add_operations_routes(app, ctx)
    app.add_exception_handler(GatewayError, gateway_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    return app


async def _start_grpc(app: FastAPI, ctx: GatewayContext) -> GrpcIngress | None:
    """The gRPC ingress when `settings.grpc_port` is set; its bound port goes on
    `app.state.grpc_port` (None without one)."""
    app.state.grpc_port = None
    if ctx.settings.grpc_port is None:
        return None
    from gateway.grpc_server import start_grpc_ingress  # grpc server code only when used

    ingress = await start_grpc_ingress(ctx, lambda: _all_models_ready(ctx))
    app.state.grpc_port = ingress.port
    return ingress


async def _all_models_ready(ctx: GatewayContext) -> bool:
    """Ready when every configured model has at least one ready arm."""
    for model in ctx.catalog.names:
        if not any((await ctx.router.ready(model)).values()):
            return False
    return bool(ctx.catalog.names)


def _add_operations_routes(app: FastAPI, ctx: GatewayContext) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> Response:
        models = {m: await ctx.router.ready(m) for m in ctx.catalog.names}
        ok = bool(models) and all(any(arms.values()) for arms in models.values())
        return json_response({"ready": ok, "models": models}, status=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the same `{"error": ...}` form."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return await gateway_error_handler(request, NotFound(f"no route for {request.url.path}"))
    error = GatewayError(str(exc.detail))
    error.status = exc.status_code  # type: ignore[assignment]
    return await gateway_error_handler(request, error)
