"""Open Inference Protocol v2 fidelity, in process with fake upstreams.

References: the KServe Open Inference Protocol ("Inference Request/Response JSON Object",
"Tensor Data"), Triton's docs/protocol/extension_binary_data.md, and tritonclient's own
encoder and decoder (`tritonclient.http`, `tritonclient.utils`) as the independent reader
and writer of the binary format, run in the clients' own venv (`tests.triton_clients`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway._proto import oip
from gateway.app import create_app
from gateway.codecs.oip_raw import from_raw, to_raw
from gateway.core.errors import BadRequest
from gateway.protocols.rest.v2_json import decode_infer
from tests.triton_clients import call
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for, toy_outputs
from tests.unit.protocols.test_grpc_ingress import infer_request, running, trailing

X = np.array([[0.0, 5.0, 1.0, 2.0]], dtype=np.float32)
V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 5, 1, 2]}]}
INFER = "/v2/models/toy/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, FakeUpstream]]]:
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}  # type: ignore[arg-type]
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client, upstreams


def _last_call(upstreams: dict[str, FakeUpstream]) -> Any:
    return max((u.calls for u in upstreams.values()), key=len)[-1]


# --- request id: OIP "Inference Response JSON Object": id is "the identifier given in the
# request, if any"; X-Request-Id is a header and comes back as one.


@pytest.mark.parametrize(
    ("body_id", "header", "want_body", "want_header"),
    [
        ("abc", "xyz", "abc", "xyz"),  # every Envoy/Istio hop adds X-Request-Id
        ("abc", None, "abc", "abc"),
        (None, "xyz", None, "xyz"),
    ],
)
def test_the_body_id_answers_in_the_body_the_header_in_the_header(
    gw: Any, body_id: str | None, header: str | None, want_body: str | None, want_header: str
) -> None:
    client, upstreams = gw
    body = {**V2, "id": body_id} if body_id else V2
    reply = client.post(INFER, json=body, headers={"X-Request-Id": header} if header else {})
    assert reply.status_code == 200
    assert reply.json().get("id") == want_body
    assert reply.headers["X-Request-Id"] == want_header
    assert _last_call(upstreams).request_id == want_header  # the prediction log's id


def test_without_any_id_the_body_has_none_and_the_header_a_new_one(gw: Any) -> None:
    client, _ = gw
    reply = client.post(INFER, json=V2)
    assert "id" not in reply.json() and len(reply.headers["X-Request-Id"]) == 32


def test_a_non_string_id_is_refused(gw: Any) -> None:
    reply = gw[0].post(INFER, json={**V2, "id": 7})
    assert reply.status_code == 400 and reply.json() == {"error": "'id' must be a string"}


@pytest.mark.parametrize("metadata", [[("x-request-id", "xyz")], []])
def test_grpc_id_field_answers_in_the_message_metadata_in_the_metadata(
    tmp_path: Path, metadata: list[tuple[str, str]]
) -> None:
    with running(tmp_path) as gateway:
        reply, call = gateway.infer(infer_request(X), metadata=metadata)  # its id is req-7
        assert reply.id == "req-7"
        assert trailing(call)["x-request-id"] == (metadata[0][1] if metadata else "req-7")
        request = infer_request(X)
        request.id = ""
        reply, call = gateway.infer(request, metadata=[("x-request-id", "xyz")])
        assert reply.id == "" and trailing(call)["x-request-id"] == "xyz"


# --- the binary tensor data extension, written and read by tritonclient itself


def _triton_call(
    client: TestClient, outputs: list[dict[str, Any]] | None, binary_input: bool = True
) -> tuple[Any, dict[str, np.ndarray]]:
    """tritonclient.http writes the request and reads the answer: (reply, outputs by name)."""
    tensor = {"name": "input", "datatype": "FP32", "array": X, "binary": binary_input}
    request = call("encode_request", inputs=[tensor], outputs=outputs)
    json_size = request["json_size"]
    headers = {} if json_size is None else {HEADER_LENGTH: str(json_size)}
    reply = client.post(INFER, content=request["body"], headers=headers)
    assert reply.status_code == 200, reply.text
    length = reply.headers.get(HEADER_LENGTH)
    result = call(
        "decode_response", body=reply.content, want=["probabilities", "class"],
        header_length=None if length is None else int(length),
    )  # fmt: skip
    return reply, result["outputs"]


def test_tritonclient_defaults_binary_in_binary_out(gw: Any) -> None:
    client, upstreams = gw
    reply, result = _triton_call(client, None)
    np.testing.assert_array_equal(_last_call(upstreams).inputs["input"], X)
    want = toy_outputs(X)
    for name in ("probabilities", "class"):
        np.testing.assert_array_equal(result[name], want[name])
    assert reply.headers["content-type"] == "application/octet-stream"
    head = json.loads(reply.content[: int(reply.headers[HEADER_LENGTH])])
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [12, 8]
    assert all("data" not in o for o in head["outputs"])


def test_per_output_binary_data_overrides_and_mixes_with_json(gw: Any) -> None:
    client, _ = gw
    outputs = [
        {"name": "class", "binary": False},  # tritonclient's InferRequestedOutput
        {"name": "probabilities", "binary": True},
    ]
    reply, result = _triton_call(client, outputs, binary_input=False)
    head = json.loads(reply.content[: int(reply.headers[HEADER_LENGTH])])
    assert [o["name"] for o in head["outputs"]] == ["class", "probabilities"]
    assert head["outputs"][0]["data"] == toy_outputs(X)["class"].tolist()
    np.testing.assert_array_equal(result["probabilities"], toy_outputs(X)["probabilities"])


def test_all_json_answers_plain_json_without_the_length_header(gw: Any) -> None:
    client, _ = gw
    outputs = [{"name": "class", "binary": False}]
    reply, result = _triton_call(client, outputs)
    assert HEADER_LENGTH not in reply.headers
    assert reply.headers["content-type"] == "application/json"
    np.testing.assert_array_equal(result["class"], toy_outputs(X)["class"])


def test_server_metadata_advertises_the_extension(gw: Any) -> None:
    assert gw[0].get("/v2").json()["extensions"] == [
        "binary_tensor_data",
        "classification",
        "statistics",
        "model_configuration",
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repository/models/toy/load"),  # model repository: load (index is served)
        ("GET", "/v2/systemsharedmemory/status"),  # shared-memory extension
        ("GET", "/v2/trace/setting"),  # trace extension
        ("GET", "/v2/logging"),  # logging extension
    ],
)
def test_other_triton_extensions_are_not_served(gw: Any, method: str, path: str) -> None:
    reply = gw[0].request(method, path)
    assert reply.status_code in (404, 405) and "error" in reply.json()


def test_class_count_is_refused_and_answers_are_never_compressed(gw: Any) -> None:
    client, upstreams = gw
    body = {**V2, "outputs": [{"name": "probabilities", "parameters": {"class_count": 2}}]}
    reply = client.post(INFER, json=body)
    assert reply.status_code == 400 and not any(u.calls for u in upstreams.values())
    assert reply.json()["error"] == (
        "output 'probabilities': unknown parameter 'class_count' "
        "(the classification extension's parameter is 'classification')"
    )
    reply = client.post(INFER, json=V2, headers={"Accept-Encoding": "gzip, deflate"})
    assert reply.status_code == 200 and "content-encoding" not in reply.headers


def test_grpc_methods_outside_the_core_protocol_are_unimplemented(tmp_path: Path) -> None:
    with running(tmp_path) as gateway, pytest.raises(grpc.RpcError) as error:
        gateway.call(
            "/inference.GRPCInferenceService/SystemSharedMemoryStatus",
            oip.ModelReadyRequest(name="toy"),  # any message: the method does not exist
            oip.ModelReadyResponse,
        )
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def _binary_body(size: int, data: bytes, header_length: int | None = None) -> tuple[bytes, dict]:
    spec: dict[str, Any] = {"name": "input", "shape": [1, 4], "datatype": "FP32"}
    spec["parameters"] = {"binary_data_size": size}
    head = json.dumps({"inputs": [spec]}).encode()
    length = len(head) if header_length is None else header_length
    return head + data, {HEADER_LENGTH: str(length)}


@pytest.mark.parametrize(
    ("size", "data", "header_length", "message"),
    [
        (12, X.tobytes()[:12], None, "input 'input': 12 bytes of binary data do not match shape [1, 4] of FP32 (16 bytes)"),
        (16, X.tobytes()[:8], None, "input 'input': binary_data_size 16 runs past the end of the body (8 bytes of binary data left)"),
        (16, X.tobytes() + b"xx", None, "2 bytes of binary data follow the inputs' binary_data_size"),
        (16, X.tobytes(), 10_000, "header Inference-Header-Content-Length is 10000 but the body has only"),
        (-1, X.tobytes(), None, "input 'input': binary_data_size must be a non-negative integer"),
    ],
)  # fmt: skip
def test_binary_framing_errors_are_400_naming_the_tensor(
    gw: Any, size: int, data: bytes, header_length: int | None, message: str
) -> None:
    client, upstreams = gw
    body, headers = _binary_body(size, data, header_length)
    reply = client.post(INFER, content=body, headers=headers)
    assert reply.status_code == 400 and reply.json()["error"].startswith(message)
    assert not any(u.calls for u in upstreams.values())


def test_a_non_numeric_header_length_is_400(gw: Any) -> None:
    reply = gw[0].post(INFER, json=V2, headers={HEADER_LENGTH: "abc"})
    assert reply.status_code == 400
    assert (
        reply.json()["error"]
        == "header Inference-Header-Content-Length must be a byte count, got 'abc'"
    )


def test_data_and_binary_data_size_together_are_refused() -> None:
    spec = {**V2["inputs"][0], "parameters": {"binary_data_size": 16}}  # type: ignore[dict-item]
    with pytest.raises(BadRequest, match="give either 'data' or binary_data_size"):
        decode_infer({"inputs": [spec]}, X.tobytes())


def test_mixed_json_and_binary_inputs_with_bytes_and_bool() -> None:
    words = np.array([b"one", b"", "zw\u00f6lf".encode()], dtype=object)
    raw = call("serialize_bytes", array=words)["raw"]  # tritonclient's own writer
    body = {
        "inputs": [
            {"name": "flags", "shape": [2], "datatype": "BOOL", "data": [True, False]},
            {"name": "words", "shape": [3], "datatype": "BYTES",
             "parameters": {"binary_data_size": len(raw)}},
            {"name": "ids", "shape": [1, 2], "datatype": "UINT16",
             "parameters": {"binary_data_size": 4}},
        ]
    }  # fmt: skip
    decoded = decode_infer(body, raw + np.array([7, 65535], "<u2").tobytes())
    assert decoded.inputs["flags"].tolist() == [True, False]
    assert decoded.inputs["words"].tolist() == words.tolist()
    assert decoded.inputs["ids"].dtype == np.uint16 and decoded.inputs["ids"].tolist() == [
        [7, 65535]
    ]


def test_bytes_raw_layout_is_tritons() -> None:
    words = np.array([b"a", b"", b"\x00\xffxyz"], dtype=object)
    assert to_raw(words) == call("serialize_bytes", array=words)["raw"]
    back = from_raw("w", "BYTES", [3], to_raw(words))
    assert back.tolist() == call("deserialize_bytes", raw=to_raw(words))["array"].tolist()
    with pytest.raises(BadRequest, match="input 'w': BYTES element 2 runs past the end"):
        from_raw("w", "BYTES", [3], to_raw(words)[:-1])


# --- strict JSON typing: Triton reads `data` with TritonJson's AsDouble/AsInt/AsUInt/
# AsBool/AsString, so a value of another JSON type is a 400, never converted.


def _v2(datatype: str, data: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    shape = [len(data)] if shape is None else shape
    return {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP32", ["0", "1"], "input 'input': data[0] is \"0\", expected a number (FP32)"),
        ("FP64", [1.0, True], "input 'input': data[1] is true, expected a number (FP64)"),
        ("FP16", [1.0, None], "input 'input': data[1] is null, expected a number (FP16)"),
        ("INT64", [1, 1.5], "input 'input': data[1] is 1.5, expected an integer (INT64)"),
        ("INT32", [2.0], "input 'input': data[0] is 2.0, expected an integer (INT32)"),
        ("INT8", [1, 200], "input 'input': data[1] = 200 is out of range for INT8 [-128, 127]"),
        ("UINT8", [-1], "input 'input': data[0] = -1 is out of range for UINT8 [0, 255]"),
        (
            "INT64",
            [2**63],
            "input 'input': data[0] = 9223372036854775808 is out of range for INT64",
        ),
        ("BOOL", [True, 1], "input 'input': data[1] is 1, expected true or false (BOOL)"),
        ("BYTES", ["a", 5], "input 'input': data[1] is 5, expected a string (BYTES)"),
        ("FP32", [[1, 2], [3, "x"]], "input 'input': data[3] is \"x\", expected a number (FP32)"),
        ("FP32", {"a": 1}, "input 'input': 'data' must be a list"),
        ("BF16", [1.0], "input 'input': unsupported datatype 'BF16'"),
    ],
)
def test_data_must_be_of_the_datatypes_json_type(
    gw: Any, datatype: str, data: Any, message: str
) -> None:
    client, upstreams = gw
    reply = client.post(
        INFER, json=_v2(datatype, data, shape=[2] if isinstance(data, dict) else None)
    )
    assert reply.status_code == 400 and reply.json()["error"].startswith(message)
    assert not any(u.calls for u in upstreams.values())


@pytest.mark.parametrize(
    ("datatype", "data", "want"),
    [
        ("FP32", [[0, 5], [1.5, 2]], np.array([[0, 5], [1.5, 2]], np.float32)),  # nested, ints ok
        ("UINT64", [2**64 - 1, 0], np.array([2**64 - 1, 0], np.uint64)),
        ("INT8", [-128, 127], np.array([-128, 127], np.int8)),
        ("FP16", [0.5, 2], np.array([0.5, 2], np.float16)),  # Triton wants FP16 binary only
        ("BYTES", ["a", "\u00e9"], np.array([b"a", "\u00e9".encode()], object)),
    ],
)
def test_well_typed_data_decodes_exactly(datatype: str, data: list[Any], want: np.ndarray) -> None:
    shape = list(want.shape)
    got = decode_infer(_v2(datatype, data, shape)).inputs["input"]
    assert got.dtype == want.dtype and got.tolist() == want.tolist()


def test_grpc_contents_must_be_in_the_datatypes_field(tmp_path: Path) -> None:
    """Triton's InferGRPCToInputHelper texts."""
    request = infer_request(X, raw=False)
    request.inputs[0].contents.ClearField("fp32_contents")
    request.inputs[0].contents.int64_contents.extend([0, 5, 1, 2])
    with running(tmp_path) as gateway, pytest.raises(grpc.RpcError) as error:
        gateway.infer(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert error.value.details() == (  # type: ignore[attr-defined]
        "unexpected explicit tensor data for input tensor 'input' for model 'toy' of type "
        "'INT64', expected datatype 'FP32'"
    )


def test_grpc_contents_next_to_raw_contents_are_refused(tmp_path: Path) -> None:
    request = infer_request(X, raw=True)
    request.inputs[0].contents.fp32_contents.extend(X.ravel().tolist())
    with running(tmp_path) as gateway, pytest.raises(grpc.RpcError) as error:
        gateway.infer(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert error.value.details() == (  # type: ignore[attr-defined]
        "contents field must not be specified when using raw_input_contents for 'input' "
        "for model 'toy'"
    )
