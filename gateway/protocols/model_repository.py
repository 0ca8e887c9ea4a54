"""Triton's statistics, model configuration and repository index extensions, read-only
from the catalog and the gateway's own measurements, as JSON-shaped dicts.

The REST routes answer these dicts as they are; the gRPC methods parse them into Triton's
messages (`ModelStatisticsResponse`, `ModelConfigResponse`, `RepositoryIndexResponse`),
whose JSON mapping they follow field for field.

Sources: Triton, docs/protocol/extension_statistics.md, extension_model_configuration.md,
extension_model_repository.md; model_config.proto and grpc_service.proto.
"""

from __future__ import annotations

from typing import Any

from gateway.catalog import ModelInfo, TensorInfo
from gateway.codecs.oip_raw import datatype_of
from gateway.context import GatewayContext
from gateway.telemetry.model_stats import Duration, VersionStatistics

STATISTICS = "statistics"
MODEL_CONFIGURATION = "model_configuration"
PLATFORM = "dualserve"
"""The `platform` and `backend` of every model: the gateway, in front of TF Serving and
TorchServe (which arm answers is the routing policy's choice, per request)."""
_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def _versions(info: ModelInfo, version: int | None) -> list[int]:
    return [info.resolve_version(version, None)] if version is not None else sorted(info.versions)


def statistics(ctx: GatewayContext, model: str | None, version: int | None) -> dict[str, Any]:
    """`{"model_stats": [...]}` for one model (one version, or all of it), or every model.

    Raises:
        NotFound: an unknown model or version.
    """
    names = [model] if model else ctx.catalog.names
    entries = []
    for name in names:
        info = ctx.catalog.get(name)
        for number in _versions(info, version if model else None):
            entries.append(_version_stats(name, number, ctx.model_stats.get(name, number)))
    return {"model_stats": entries}


def _duration(value: Duration) -> dict[str, int]:
    return {"count": value.count, "ns": value.ns}


def _version_stats(model: str, version: int, stats: VersionStatistics) -> dict[str, Any]:
    inference = {key: _duration(getattr(stats, key)) for key in _DURATIONS}
    inference |= {"cache_hit": _duration(Duration()), "cache_miss": _duration(Duration())}
    return {
        "name": model,
        "version": str(version),
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": inference,
        "batch_stats": [],
    }


def _data_type(tensor: TensorInfo) -> str:
    datatype = datatype_of(tensor.dtype)
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _tensor(tensor: TensorInfo) -> dict[str, Any]:
    """A model_config `ModelInput`/`ModelOutput`: dims without the batch dimension, as
    Triton writes them for a model with `max_batch_size` > 0; a tensor of one value per
    row (`class`, `[batch]`) is dims `[1]` reshaped to `[]`, as Triton requires dims."""
    entry: dict[str, Any] = {"name": tensor.name, "data_type": _data_type(tensor)}
    entry["dims"] = list(tensor.shape[1:])
    if not entry["dims"]:
        entry |= {"dims": [1], "reshape": {"shape": []}}
    return entry


def model_config(info: ModelInfo, version: int | None) -> dict[str, Any]:
    """The model's configuration (Triton's `ModelConfig`): its versions, batch limit and
    tensors. The same for every version: both exports of a version share one signature.

    Raises:
        NotFound: an unknown version.
    """
    info.resolve_version(version, None)
    return {
        "name": info.name,
        "platform": PLATFORM,
        "backend": PLATFORM,
        "version_policy": {"specific": {"versions": sorted(info.versions)}},
        "max_batch_size": info.limits.max_batch_size,
        "input": [_tensor(t) for t in info.inputs],
        "output": [_tensor(t) for t in info.outputs],
    }


async def repository_index(ctx: GatewayContext, ready_only: bool) -> list[dict[str, str]]:
    """One entry per model version: READY when an arm of the model is ready, else
    UNAVAILABLE with the reason; `ready_only` keeps the READY ones."""
    index = []
    for name in ctx.catalog.names:
        ready = any((await ctx.router.ready(name)).values())
        state, reason = ("READY", "") if ready else ("UNAVAILABLE", "no ready backend arm")
        if ready_only and not ready:
            continue
        for version in sorted(ctx.catalog.get(name).versions):
            index.append({"name": name, "version": str(version), "state": state, "reason": reason})
    return index
