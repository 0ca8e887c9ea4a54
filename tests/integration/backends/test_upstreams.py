"""The four upstream clients against real TF Serving and TorchServe on loopback ports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backends.process import free_port
from backends.tfserving.launcher import TFServingEndpoints, start_tfserving, stop_tfserving
from backends.torchserve.launcher import TorchServeEndpoints, start_torchserve, stop_torchserve
from gateway.core.errors import NotFound, UpstreamTimeout, UpstreamUnavailable
from gateway.core.types import Framework, InferRequest, InferResponse
from gateway.settings import GatewaySettings
from gateway.upstreams.base import Upstream
from gateway.upstreams.factory import build_upstreams
from trainers.architecture import to_model_input
from trainers.data import load_dataset
from trainers.manifest import load_manifest

pytestmark = pytest.mark.slow

MODELS = ["digits-mlp", "digits-cnn"]
KINDS: list[tuple[Framework, str]] = [
    ("tensorflow", "grpc"),
    ("tensorflow", "rest"),
    ("pytorch", "grpc"),
    ("pytorch", "rest"),
]
BATCH = 8  # within TF Serving's default max_batch_size


@dataclass(frozen=True)
class Backends:
    tf: TFServingEndpoints
    torch: TorchServeEndpoints
    tf_dir: Path | None = None
    ts_dir: Path | None = None


@pytest.fixture(scope="module")
def backends(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    tf_dir, ts_dir = tmp_path_factory.mktemp("tfserving"), tmp_path_factory.mktemp("torchserve")
    try:
        tf = start_tfserving(trained_store, tf_dir)
        torch = start_torchserve(trained_store, ts_dir, timeout=150)
        yield Backends(tf, torch, tf_dir, ts_dir)
    finally:
        stop_torchserve(ts_dir)
        stop_tfserving(tf_dir)


def settings_for(backends: Backends, transport: str, **extra: Any) -> GatewaySettings:
    tf, torch = backends.tf, backends.torch
    return GatewaySettings(
        tensorflow={"transport": transport, "grpc": [tf.grpc], "rest": [tf.rest], **extra},
        pytorch={
            "transport": transport,
            "grpc": [torch.grpc],
            "rest": [torch.inference],
            "token_file": torch.token_file,
            **extra,
        },
    )


def call(upstream: Upstream, request: InferRequest, timeout: float = 30.0) -> InferResponse:
    async def go() -> InferResponse:
        try:
            return await upstream.infer(request, timeout)
        finally:
            await upstream.aclose()

    return asyncio.run(go())


def client(backends: Backends, framework: Framework, transport: str, **extra: Any) -> Upstream:
    return build_upstreams(settings_for(backends, transport, **extra))[framework]


def in_process_classes(store: Path, model: str, framework: Framework, x: np.ndarray) -> list:
    artifact = load_manifest(store).models[model].versions["1"].frameworks[framework].artifact
    if framework == "tensorflow":
        from trainers.tf_model import load_predictor
    else:
        from trainers.torch_model import load_predictor
    return load_predictor(store / artifact)(x)["class"].tolist()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("framework", "transport"), KINDS)
def test_clients_match_the_exported_model(
    trained_store: Path, backends: Backends, model: str, framework: Framework, transport: str
) -> None:
    x = to_model_input(load_dataset("digits").test.x[:BATCH], model.split("-")[1])
    request = InferRequest(model=model, inputs={"input": x}, version=1)  # as the router sends
    response = call(client(backends, framework, transport), request)
    assert response.backend == framework
    assert response.version == 1
    assert response.outputs["probabilities"].shape == (BATCH, 10)
    assert response.outputs["class"].tolist() == in_process_classes(
        trained_store, model, framework, x
    )
    assert response.timings["upstream"] > 0


@pytest.mark.parametrize(("framework", "transport"), KINDS)
def test_explicit_version_and_output_filter(
    backends: Backends, framework: Framework, transport: str
) -> None:
    x = np.zeros((2, 64), dtype=np.float32)
    request = InferRequest(model="digits-mlp", inputs={"input": x}, version=1, outputs=["class"])
    response = call(client(backends, framework, transport), request)
    assert response.version == 1
    assert list(response.outputs) == ["class"]


@pytest.mark.parametrize(("framework", "transport"), KINDS)
def test_unknown_model_and_version_are_not_found(
    backends: Backends, framework: Framework, transport: str
) -> None:
    x = np.zeros((1, 64), dtype=np.float32)
    with pytest.raises(NotFound, match=f"^{framework}: model 'no-such-model'"):
        call(client(backends, framework, transport), InferRequest("no-such-model", {"input": x}))
    with pytest.raises(NotFound, match="version 99"):
        call(client(backends, framework, transport), InferRequest("digits-mlp", {"input": x}, 99))


@pytest.mark.parametrize(("framework", "transport"), KINDS)
def test_tiny_timeout(backends: Backends, framework: Framework, transport: str) -> None:
    x = np.zeros((1, 64), dtype=np.float32)
    with pytest.raises(UpstreamTimeout, match=f"^{framework}: "):
        call(client(backends, framework, transport), InferRequest("digits-mlp", {"input": x}), 1e-4)


@pytest.mark.parametrize(("framework", "transport"), KINDS)
def test_ready(backends: Backends, framework: Framework, transport: str) -> None:
    async def go() -> bool:
        upstream = client(backends, framework, transport)
        try:
            return await upstream.ready("digits-mlp")
        finally:
            await upstream.aclose()

    assert asyncio.run(go())


@pytest.mark.parametrize(("framework", "transport"), KINDS)
def test_unreachable_replica(backends: Backends, framework: Framework, transport: str) -> None:
    port = free_port()
    dead = Backends(
        TFServingEndpoints(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", "", "", 0),
        TorchServeEndpoints(
            f"http://127.0.0.1:{port}", "", "", f"127.0.0.1:{port}", "",
            backends.torch.token_file, 0,
        ),
    )  # fmt: skip
    x = np.zeros((1, 64), dtype=np.float32)
    with pytest.raises(UpstreamUnavailable, match="no healthy replica"):
        call(client(dead, framework, transport), InferRequest("digits-mlp", {"input": x}))


def test_stopped_backends_are_unavailable(backends: Backends) -> None:
    """Last in this module: stops both servers (the fixture's teardown then finds them gone)."""
    x = np.zeros((1, 64), dtype=np.float32)
    request = InferRequest("digits-mlp", {"input": x})

    async def go() -> list[BaseException | None]:
        upstreams = [client(backends, f, t, unhealthy_for_s=0) for f, t in KINDS]
        for upstream in upstreams:  # connections are pooled and the token is known
            await upstream.infer(request, 30.0)
        assert backends.tf_dir is not None and backends.ts_dir is not None
        await asyncio.to_thread(stop_tfserving, backends.tf_dir)
        await asyncio.to_thread(stop_torchserve, backends.ts_dir)
        outcomes: list[BaseException | None] = []
        for upstream in upstreams:
            try:
                await upstream.infer(request, 10.0)
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
            await upstream.aclose()
        return outcomes

    outcomes = asyncio.run(go())
    assert [type(o) for o in outcomes] == [UpstreamUnavailable] * len(KINDS), outcomes
