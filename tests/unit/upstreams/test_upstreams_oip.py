"""The OIP upstream kind: its REST and gRPC bodies read back by the other side's codecs,
answers in either form read, and the `servers` key choosing it per arm."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from backends.oip.rest_codec import decode_infer
from gateway._proto import oip
from gateway.catalog import Catalog
from gateway.control.catalog_follower import OipVersions, TFServingVersions, build_follower
from gateway.core.errors import UpstreamError
from gateway.core.types import InferRequest
from gateway.protocols.grpc.oip_tensors import decode_inputs
from gateway.settings import GatewaySettings
from gateway.upstreams.factory import build_upstreams, upstream_for
from gateway.upstreams.failures import Target
from gateway.upstreams.kinds.oip_grpc import OipGrpc
from gateway.upstreams.kinds.oip_rest import HEADER_LENGTH, OipRest
from gateway.upstreams.pooled import PooledUpstream

X = (np.arange(8, dtype=np.float32).reshape(2, 4) - 3) / 3
TARGET = Target("pytorch", "m", 1)


def test_rest_requests_carry_binary_inputs_and_ask_binary_outputs() -> None:
    call = OipRest().encode(InferRequest("m", {"input": X}, version=3, request_id="r9"))
    assert call.method == "POST" and call.path == "/v2/models/m/versions/3/infer"
    assert call.headers is not None and call.body is not None
    decoded = decode_infer(call.body, call.headers[HEADER_LENGTH])  # the server's reading
    np.testing.assert_array_equal(decoded.inputs["input"], X)
    assert decoded.id == "r9" and decoded.binary_default and decoded.outputs == []
    asked = OipRest().encode(InferRequest("m", {"input": X}, outputs=["class"]))
    assert asked.body is not None
    header = orjson.loads(asked.body[: int(asked.headers[HEADER_LENGTH])])  # type: ignore[index]
    assert header["outputs"] == [{"name": "class", "parameters": {"binary_data": True}}]


def test_rest_answers_read_binary_and_json_outputs() -> None:
    probs = np.array([[0.25, 0.75]], np.float32)
    head = orjson.dumps(
        {
            "model_name": "m", "model_version": "4",
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [1, 2],
                 "parameters": {"binary_data_size": 8}},
                {"name": "class", "datatype": "INT64", "shape": [1], "data": [1]},
            ],
        }
    )  # fmt: skip
    request = InferRequest("m", {"input": X})
    decoded = OipRest().decode(head + probs.astype("<f4").tobytes(), request, TARGET)
    assert decoded.version == 4
    np.testing.assert_array_equal(decoded.outputs["probabilities"], probs)
    assert decoded.outputs["class"].dtype == np.int64 and decoded.outputs["class"].tolist() == [1]
    with pytest.raises(UpstreamError, match="unreadable OIP answer"):
        OipRest().decode(head + b"\0" * 4, request, TARGET)


def test_rest_readiness_reads_triton_and_kserve_answers() -> None:
    rest = OipRest()
    assert rest.probe("a b").path == "/v2/models/a%20b/ready"
    assert rest.is_ready(b"") and rest.is_ready(b'{"name": "m", "ready": true}')
    assert not rest.is_ready(b'{"name": "m", "ready": false}')


def test_grpc_requests_are_raw_and_read_by_the_oip_ingress_codec() -> None:
    call = OipGrpc().encode(InferRequest("m", {"input": X}, version=2, request_id="g"))
    message = oip.ModelInferRequest.FromString(call.serializer(call.message))
    assert message.model_name == "m" and message.model_version == "2" and message.id == "g"
    inputs, raw = decode_inputs(message)
    assert raw
    np.testing.assert_array_equal(inputs["input"], X)


def test_grpc_answers_read_raw_or_typed_contents() -> None:
    raw = oip.ModelInferResponse(model_name="m", model_version="5")
    raw.outputs.add(name="class", datatype="INT64", shape=[2])
    raw.raw_output_contents.append(np.array([1, 0], "<i8").tobytes())
    decoded = OipGrpc().decode(raw, InferRequest("m", {"input": X}), TARGET)
    assert decoded.version == 5 and decoded.outputs["class"].tolist() == [1, 0]
    typed = oip.ModelInferResponse(model_name="m", model_version="")
    tensor = typed.outputs.add(name="probabilities", datatype="FP32", shape=[1, 2])
    tensor.contents.fp32_contents.extend([0.5, 0.5])
    decoded = OipGrpc().decode(typed, InferRequest("m", {"input": X}), TARGET)
    assert decoded.version is None and decoded.outputs["probabilities"].shape == (1, 2)
    bad = oip.ModelInferResponse()
    bad.outputs.add(name="h", datatype="FP16", shape=[1])
    with pytest.raises(UpstreamError, match="FP16 without raw contents"):
        OipGrpc().decode(bad, InferRequest("m", {"input": X}), TARGET)


def test_the_servers_key_picks_the_oip_upstream_and_its_follower() -> None:
    settings = GatewaySettings(
        tensorflow={"rest": ["http://t:1"]},
        pytorch={"rest": ["http://p:1"]},
        oip={"grpc": ["o:2"], "rest": ["http://o:3"], "timeout_s": 1.25},
        servers={"pytorch": "oip"},
    )
    upstreams = build_upstreams(settings)
    torch = upstreams["pytorch"]
    assert isinstance(torch, PooledUpstream) and isinstance(torch.codec, OipGrpc)
    assert torch.framework == "pytorch" and torch.settings.timeout_s == 1.25
    follower = build_follower(settings, Catalog({}))
    assert follower is not None
    kinds = {type(s): s.framework for s in follower.sources}
    assert kinds == {TFServingVersions: "tensorflow", OipVersions: "pytorch"}

    async def close() -> None:
        await follower.aclose()
        for upstream in upstreams.values():
            await upstream.aclose()

    asyncio.run(close())


def test_a_server_that_does_not_serve_the_framework_is_refused() -> None:
    with pytest.raises(ValueError, match=r"servers\.pytorch: tfserving does not serve pytorch"):
        GatewaySettings(servers={"pytorch": "tfserving"})
    with pytest.raises(ValueError, match="torchserve does not serve tensorflow"):
        upstream_for("torchserve", "tensorflow", GatewaySettings())
    with pytest.raises(ValueError, match=r"oip: transport is grpc but settings\.oip\.grpc"):
        upstream_for("oip", "tensorflow", GatewaySettings())


def test_oip_versions_read_the_model_metadata() -> None:
    source = OipVersions(["http://o:1"], "pytorch")
    assert source.url("http://o:1", "digits-mlp") == "http://o:1/v2/models/digits-mlp"
    assert source.parse({"name": "m", "versions": ["1", "3", "x"]}) == {1, 3}
    assert source.parse({"name": "m"}) == frozenset()
    asyncio.run(source.aclose())
