"""Settings reach the clients: transport, replicas, timeout, limits and the TorchServe token."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gateway.core.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.settings import GatewaySettings
from gateway.core.types import InferRequest
from gateway.upstreams.base import Upstream
from gateway.upstreams.factory import build_upstreams
from gateway.upstreams.transports.grpc_channels import GrpcWire
from gateway.upstreams.pooled import PooledUpstream
from gateway.upstreams.transports.rest_session import RestWire
from gateway.upstreams.kinds.tfserving_grpc import TFServingGrpc
from gateway.upstreams.kinds.tfserving_rest import TFServingRest
from gateway.upstreams.kinds.torchserve_grpc import TorchServeGrpc
from gateway.upstreams.kinds.torchserve_rest import TorchServeRest
from gateway.upstreams.torchserve_token import TokenSource
from tests.unit.test_upstreams_clients import TOKEN, Seen, rest_backend


def key_file(path: Path, key: str) -> Path:
    path.write_text(json.dumps({"inference": {"key": key}, "management": {"key": "m"}}))
    return path


def test_grpc_settings_reach_the_grpc_clients() -> None:
    settings = GatewaySettings(
        tensorflow={
            "transport": "grpc",
            "grpc": ["10.0.0.1:8500", "10.0.0.2:8500"],
            "timeout_s": 1.5,
        },
        pytorch={
            "transport": "grpc",
            "grpc": ["10.0.0.3:7070"],
            "unhealthy_for_s": 9.0,
            "token": "abc",
        },
    )
    upstreams = build_upstreams(settings)
    tf, torch = upstreams["tensorflow"], upstreams["pytorch"]
    assert isinstance(tf, PooledUpstream) and isinstance(torch, PooledUpstream)
    assert isinstance(tf.codec, TFServingGrpc) and isinstance(tf.wire, GrpcWire)
    assert isinstance(torch.codec, TorchServeGrpc) and isinstance(torch.wire, GrpcWire)
    assert tf.wire.addresses == ["10.0.0.1:8500", "10.0.0.2:8500"]
    assert tf.settings.timeout_s == 1.5
    assert torch.settings.unhealthy_for_s == 9.0
    assert torch.codec.token.metadata() == (("authorization", "Bearer abc"),)
    assert all(isinstance(u, Upstream) for u in upstreams.values())


def test_rest_settings_reach_the_rest_clients(tmp_path: Path) -> None:
    settings = GatewaySettings(
        tensorflow={"transport": "rest", "rest": ["http://a:8501/"], "max_connections": 7},
        pytorch={
            "transport": "rest",
            "rest": ["http://b:8080", "http://c:8080"],
            "timeout_s": 0.25,
            "token_file": key_file(tmp_path / "key_file.json", "from-file"),
        },
    )
    upstreams = build_upstreams(settings)
    tf, torch = upstreams["tensorflow"], upstreams["pytorch"]
    assert isinstance(tf, PooledUpstream) and isinstance(torch, PooledUpstream)
    assert isinstance(tf.codec, TFServingRest) and isinstance(tf.wire, RestWire)
    assert isinstance(torch.codec, TorchServeRest) and isinstance(torch.wire, RestWire)
    assert [replica.url for replica in tf.pool().replicas] == ["http://a:8501"]
    assert tf.wire.max_connections == 7
    assert [replica.url for replica in torch.pool().replicas] == [
        "http://b:8080",
        "http://c:8080",
    ]
    assert torch.settings.timeout_s == 0.25
    assert torch.codec.token.headers() == {"Authorization": "Bearer from-file"}


def test_missing_addresses_fail_fast() -> None:
    with pytest.raises(ValueError, match=r"settings\.pytorch\.rest lists no replica"):
        build_upstreams(GatewaySettings(tensorflow={"rest": ["http://h:1"]}))
    # Both default transports are REST: gRPC addresses alone are not enough
    with pytest.raises(ValueError, match=r"settings\.tensorflow\.rest lists no replica"):
        build_upstreams(GatewaySettings(tensorflow={"grpc": ["h:1"]}, pytorch={"grpc": ["h:2"]}))


def test_each_backend_defaults_to_its_faster_transport() -> None:
    settings = GatewaySettings()
    assert (settings.tensorflow.transport, settings.pytorch.transport) == ("rest", "rest")


def test_token_and_timeout_from_settings_reach_the_wire(tmp_path: Path) -> None:
    seen = Seen()

    async def go(model: str) -> int:
        async with rest_backend(seen) as url:
            settings = GatewaySettings(
                tensorflow={"rest": ["http://h:1"]},
                pytorch={
                    "transport": "rest",
                    "rest": [url],
                    "timeout_s": 0.3,
                    "token_file": key_file(tmp_path / "key_file.json", TOKEN),
                },
            )
            client = build_upstreams(settings)["pytorch"]
            try:
                x = np.ones((1, 4), np.float32)
                request = InferRequest(model=model, inputs={"input": x}, version=4)
                return (await client.infer(request, 30.0)).version
            finally:
                await client.aclose()

    assert asyncio.run(go("digits-mlp")) == 4
    assert seen.auth == [f"Bearer {TOKEN}"]
    with pytest.raises(UpstreamTimeout):  # 0.3 s from settings beats the caller's 30 s
        asyncio.run(go("slow"))


def test_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = key_file(tmp_path / "key_file.json", "first")
    source = TokenSource(token_file=path, recheck_s=0)
    assert source.key() == "first"
    key_file(path, "second")
    os.utime(path, ns=(1, 10**18))  # a different mtime, whatever the file system's resolution
    assert source.key() == "second"
    path.unlink()  # a stopped TorchServe removes it: keep the last key, the call will fail
    assert source.key() == "second"


def test_token_file_is_checked_at_most_once_per_interval(tmp_path: Path) -> None:
    path = key_file(tmp_path / "key_file.json", "first")
    source = TokenSource(token_file=path, recheck_s=3600)
    assert source.key() == "first"
    key_file(path, "second")
    os.utime(path, ns=(1, 10**18))
    assert source.key() == "first"  # within the interval: no stat, the cached key


def test_token_file_problems() -> None:
    with pytest.raises(UpstreamUnavailable, match="token file is missing") as missing:
        TokenSource(token_file=Path("/nonexistent/key_file.json")).key()
    assert "/nonexistent" not in str(missing.value)  # paths go to the log, not to clients
    assert TokenSource().headers() == {}
    assert TokenSource("direct", Path("/nonexistent")).key() == "direct"


def test_malformed_token_file_is_a_gateway_error(tmp_path: Path) -> None:
    path = tmp_path / "key_file.json"
    path.write_text("{}")
    with pytest.raises(UpstreamError, match="token file is unusable") as unusable:
        TokenSource(token_file=path).key()
    assert str(tmp_path) not in str(unusable.value)
