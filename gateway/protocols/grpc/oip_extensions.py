"""Triton's `ModelStatistics`, `ModelConfig` and `RepositoryIndex` on the gateway's
`GRPCInferenceService`, from the same answers as the v2 REST routes
(`gateway.protocols.model_repository`), parsed into Triton's messages
(`gateway._proto.triton`). An empty `name` asks for every model (statistics) and an empty
`version` for every version, as in Triton; an unknown model or version is NOT_FOUND.
Statistics need the predict credentials; configuration and index are public, as metadata.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from gateway._proto import triton
from gateway.context import GatewayContext
from gateway.core.version import parse_version
from gateway.protocols import model_repository
from gateway.protocols.grpc.common import Boundary, Call, unary_methods


class ExtensionServicer:
    """The read-only extensions, on the catalog and the gateway's statistics."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def statistics(self, request: Any, call: Call) -> Any:
        self.ctx.auth.check_predict(call.headers)  # as REST: other clients' traffic
        body = model_repository.statistics(
            self.ctx, request.name or None, parse_version(request.version)
        )
        return json_format.ParseDict(body, triton.ModelStatisticsResponse())

    async def config(self, request: Any, call: Call) -> Any:
        info = self.ctx.catalog.get(request.name)
        body = model_repository.model_config(info, parse_version(request.version))
        return json_format.ParseDict({"config": body}, triton.ModelConfigResponse())

    async def index(self, request: Any, call: Call) -> Any:
        models = await model_repository.repository_index(self.ctx, request.ready)
        return json_format.ParseDict({"models": models}, triton.RepositoryIndexResponse())


def extension_methods(ctx: GatewayContext, boundary: Boundary) -> dict[str, grpc.RpcMethodHandler]:
    """Handlers for ModelStatistics, ModelConfig and RepositoryIndex."""
    servicer = ExtensionServicer(ctx)
    return unary_methods(boundary, triton, {
        "ModelStatistics": servicer.statistics,
        "ModelConfig": servicer.config,
        "RepositoryIndex": servicer.index,
    })  # fmt: skip
