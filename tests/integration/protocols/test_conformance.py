"""Conformance: the gateway answers as the reference does, for both frameworks.

Every TF Serving case sends the same request to the bundled TF Serving server directly
(the reference: it follows TF Serving's REST and gRPC APIs, its texts and its JSON codec)
and to the gateway pinned to each framework (`X-Backend: tensorflow|pytorch`), and
asserts equal status, equal error text and an equal body: byte for byte on the
tensorflow arm (the same model behind the same codec), and value for value on the
pytorch arm (TorchScript computes the same function; float32 sums may differ in the
last bits, so probabilities are compared with a tolerance). Non-finite inputs are the
exception: the frameworks themselves differ there (TF's ReLU turns NaN into 0, PyTorch's
keeps it), so the pytorch arm's values are compared with TorchServe's own answer to the
same TF Serving JSON body. Cases that have no TF Serving reference (RFC 9110's `Allow`)
assert the RFC.

Each kind of the issue is a parametrised family; each case names its reference.
One stack serves the module, started with version labels (`dualserve up --label`).
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from backends.torchserve.launcher import read_token
from tests.integration.conftest import running_stack
from trainers.architecture import to_model_input
from trainers.data import load_dataset
from wire import tfserving_json

MLP, CNN = "digits-mlp", "digits-cnn"
LABELS = {MLP: {"stable": 1}, CNN: {"canary": 1}}
ARMS = ("tensorflow", "pytorch")


@pytest.fixture(scope="module")
def stack(trained_store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """This module's stack: both backends and the gateway, with version labels."""
    with running_stack(
        trained_store, tmp_path_factory.mktemp("conformance"), version_labels=LABELS
    ) as state:
        yield state


@pytest.fixture(scope="module")
def tf_rest(stack: dict) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["tensorflow"]["rest"], timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def gateway(stack: dict) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def torchserve(stack: dict) -> Iterator[httpx.Client]:
    """TorchServe directly: the pytorch arm's own reference for values (its handler
    speaks TF Serving's JSON through the same codec)."""
    token = read_token(Path(stack["pytorch"]["token_file"]))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base = stack["pytorch"]["inference"]
    with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    """Five real test images of the digits data set, 64 raw pixel values (0-16) each."""
    return load_dataset("digits").test.x[:5].reshape(5, 64).astype(np.float32)


def _exchange(
    tf_rest: httpx.Client, gateway: httpx.Client, method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, dict[str, httpx.Response]]:
    """The reference's answer, and the gateway's answer pinned to each arm."""
    headers = kwargs.pop("headers", {})
    reference = tf_rest.request(method, path, headers=headers, **kwargs)
    arms = {
        arm: gateway.request(method, path, headers={**headers, "X-Backend": arm}, **kwargs)
        for arm in ARMS
    }
    return reference, arms


def _same_values(got: Any, want: Any, where: str = "body", values: bool = True) -> None:
    """The same JSON structure and types; with `values`, the same values (floats within
    float32 noise, NaN where NaN)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            _same_values(got[key], want[key], f"{where}.{key}", values)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            _same_values(g, w, f"{where}[{index}]", values)
    elif isinstance(want, float):
        assert isinstance(got, float), where
        assert (
            not values
            or (math.isnan(got) and math.isnan(want))
            or math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6)
        ), (where, got, want)
    else:
        assert type(got) is type(want) and (not values or got == want), (where, got, want)


def assert_conforms(
    reference: httpx.Response,
    arms: dict[str, httpx.Response],
    torch_reference: httpx.Response | None = None,
    tf_values: bool = True,
) -> None:
    """Equal status, equal error text, equal body: bytes on the tensorflow arm (without
    `tf_values`, its structure and types only); on the pytorch arm TF Serving's structure
    and types, and `torch_reference`'s values (the two frameworks' trained weights differ
    in the last digits)."""
    for arm, reply in arms.items():
        assert reply.status_code == reference.status_code, (arm, reply.text, reference.text)
        if reference.status_code != 200:
            assert reply.json()["error"] == reference.json()["error"], arm
        elif arm == "tensorflow" and tf_values:
            assert reply.content == reference.content, (reply.text, reference.text)
        elif arm == "tensorflow":
            want = tfserving_json.loads(reference.content)
            _same_values(tfserving_json.loads(reply.content), want, values=False)
        else:
            got = tfserving_json.loads(reply.content)
            _same_values(got, tfserving_json.loads(reference.content), values=False)
            assert torch_reference is not None and torch_reference.status_code == 200
            _same_values(got, tfserving_json.loads(torch_reference.content))


def _torch(torchserve: httpx.Client, model: str, body: bytes | str) -> httpx.Response:
    """TorchServe's own answer to a TF Serving JSON body (the handler speaks it)."""
    return torchserve.post(f"/predictions/{model}", content=body)


def _row(pixels: np.ndarray, token: str | None = None, at: int = 0) -> str:
    values = [repr(float(v)) for v in pixels]
    if token is not None:
        values[at] = token
    return "[" + ",".join(values) + "]"


# ---- kind 1: NaN, Infinity, -Infinity (TF Serving's JSON Mapping) -----------------------

NON_FINITE = [
    pytest.param("row", "NaN", 0, id="row NaN first pixel"),
    pytest.param("row", "Infinity", 10, id="row Infinity"),
    pytest.param("row", "-Infinity", 33, id="row -Infinity"),
    pytest.param("columnar", "NaN", 63, id="columnar NaN last pixel"),
    pytest.param("two rows", "NaN", 5, id="NaN in the second of two rows"),
]


@pytest.mark.parametrize(("form", "token", "at"), NON_FINITE)
def test_non_finite_numbers_in_and_out(
    tf_rest: httpx.Client,
    torchserve: httpx.Client,
    gateway: httpx.Client,
    pixels: np.ndarray,
    form: str,
    token: str,
    at: int,
) -> None:
    """TF Serving REST API, JSON Mapping: NaN, Infinity and -Infinity are read in
    requests and written in answers: what a backend answers as NaN reaches the client as
    NaN. PyTorch propagates NaN, so the pytorch arm's values are checked; TF's answer to a
    NaN input depends on the kernel's code path (Eigen's vectorised max(NaN, 0) gives 0,
    its scalar one NaN: seen here as finite through one ingress and NaN through another
    for the same bytes), so the tensorflow arm is checked for status and structure."""
    row = _row(pixels[0], token, at)
    body = {
        "row": f'{{"instances": [{row}]}}',
        "columnar": f'{{"inputs": {{"input": [{row}]}}}}',
        "two rows": f'{{"instances": [{_row(pixels[1])}, {row}]}}',
    }[form]
    path = f"/v1/models/{MLP}:predict"
    reference, arms = _exchange(tf_rest, gateway, "POST", path, content=body)
    assert reference.status_code == 200, reference.text
    torch_reference = _torch(torchserve, MLP, body)
    assert_conforms(reference, arms, torch_reference, tf_values=False)
    assert "NaN" in torch_reference.text and "NaN" in arms["pytorch"].text


def test_non_finite_numbers_on_v2_rest(
    tf_rest: httpx.Client, torchserve: httpx.Client, gateway: httpx.Client, pixels: np.ndarray
) -> None:
    """Open Inference Protocol REST (Triton reads and writes NaN the same way): a NaN
    input is read, and the gateway's v2 answer holds what each framework's own server
    answers, NaN written as NaN (TF's values are not compared: see the test above)."""
    row = _row(pixels[0], "NaN", 0)
    body = f'{{"inputs": [{row}]}}'
    references = {
        "tensorflow": tf_rest.post(f"/v1/models/{MLP}:predict", content=body),
        "pytorch": _torch(torchserve, MLP, body),
    }
    v2 = f'{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": {row}}}]}}'
    for arm, reference in references.items():
        reply = gateway.post(f"/v2/models/{MLP}/infer", content=v2, headers={"X-Backend": arm})
        assert (reply.status_code, reference.status_code) == (200, 200), reply.text
        outputs = {o["name"]: o["data"] for o in tfserving_json.loads(reply.content)["outputs"]}
        want = tfserving_json.loads(reference.content)["outputs"]
        _same_values(outputs["probabilities"], want["probabilities"][0], values=arm == "pytorch")
    assert '"data":[NaN' in reply.text  # the pytorch arm's NaN reaches the v2 client as NaN


# ---- kind 2: float32 written as float32 -----------------------------------------------

NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")


@pytest.mark.parametrize("form", ["row", "columnar"])
@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("model", [MLP, CNN])
def test_float32_outputs_are_written_as_float32(
    tf_rest: httpx.Client,
    torchserve: httpx.Client,
    gateway: httpx.Client,
    pixels: np.ndarray,
    form: str,
    batch: int,
    model: str,
) -> None:
    """TF Serving's writer (json_tensor.cc `WriteDecimal`) prints a float32 as float32:
    at most 9 significant digits that read back as the same float32."""
    rows = to_model_input(pixels[:batch].reshape(batch, 8, 8), model.split("-")[1]).tolist()
    body = tfserving_json.dumps({"instances": rows} if form == "row" else {"inputs": rows})
    path = f"/v1/models/{model}:predict"
    reference, arms = _exchange(tf_rest, gateway, "POST", path, content=body)
    assert_conforms(reference, arms, _torch(torchserve, model, body))
    for reply in (reference, *arms.values()):
        numbers = NUMBER.findall(reply.text)
        assert len(numbers) >= 10 * batch
        for text in numbers:  # the shortest decimal of its float32: numpy's repr's digits
            assert len(_digits(text)) <= 9, text
            assert _digits(text) == _digits(str(np.float32(text))), text


def _digits(text: str) -> str:
    """The significant digits of a decimal number's text."""
    return text.split("e")[0].replace(".", "").replace("-", "").strip("0")


# ---- kind 3: Content-Encoding ----------------------------------------------------------

CODINGS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
]


@pytest.mark.parametrize(("coding", "compress"), CODINGS)
@pytest.mark.parametrize("form", ["row", "columnar"])
def test_compressed_request_bodies(
    tf_rest: httpx.Client,
    torchserve: httpx.Client,
    gateway: httpx.Client,
    pixels: np.ndarray,
    coding: str,
    compress: Callable[[bytes], bytes],
    form: str,
) -> None:
    """RFC 9110 §8.4 (TF Serving accepts gzip bodies): the same answer as uncompressed."""
    key = "instances" if form == "row" else "inputs"
    raw = tfserving_json.dumps({key: pixels[:3]})
    plain = tf_rest.post(f"/v1/models/{MLP}:predict", content=raw)
    headers = {"Content-Encoding": coding}
    reference, arms = _exchange(
        tf_rest,
        gateway,
        "POST",
        f"/v1/models/{MLP}:predict",
        content=compress(raw),
        headers=headers,
    )
    assert reference.content == plain.content
    assert_conforms(reference, arms, _torch(torchserve, MLP, raw))
    v2 = tfserving_json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 64], "data": pixels[:3]}]}
    )
    reply = gateway.post(f"/v2/models/{MLP}/infer", content=compress(v2), headers=headers)
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br"])
def test_unknown_codings_are_415(
    tf_rest: httpx.Client, gateway: httpx.Client, pixels: np.ndarray, coding: str
) -> None:
    """RFC 9110 §15.5.16 (415) and §12.5.3 (the answer lists the accepted codings)."""
    body = tfserving_json.dumps({"instances": pixels[:1]})
    reference, arms = _exchange(
        tf_rest,
        gateway,
        "POST",
        f"/v1/models/{MLP}:predict",
        content=body,
        headers={"Content-Encoding": coding},
    )
    assert reference.status_code == 415
    assert_conforms(reference, arms)
    for reply in (reference, *arms.values()):
        assert reply.headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize("path", [f"/v1/models/{MLP}:predict", f"/v1/models/{MLP}:classify"])
def test_a_body_that_inflates_past_the_limit_is_413(
    tf_rest: httpx.Client, gateway: httpx.Client, path: str
) -> None:
    """The limit is on the decoded size (a 128 MiB zip bomb, 130 kB on the wire): both
    servers refuse it while decoding. Their limits differ (64 MiB and 4 MiB), so only the
    status is compared."""
    bomb = gzip.compress(b" " * (128 << 20), compresslevel=9)
    assert len(bomb) < 200_000
    reference, arms = _exchange(
        tf_rest, gateway, "POST", path, content=bomb, headers={"Content-Encoding": "gzip"}
    )
    for reply in (reference, *arms.values()):
        assert reply.status_code == 413
        assert "request body decodes to more than the limit" in reply.json()["error"]


# ---- kind 4: version labels ------------------------------------------------------------

EXAMPLES = '{"examples": [{"x": [1.0]}]}'
LABEL_FORMS = [
    pytest.param("GET", f"/v1/models/{MLP}/labels/{{label}}", None, id="status"),
    pytest.param("GET", f"/v1/models/{MLP}/labels/{{label}}/metadata", None, id="metadata"),
    pytest.param("POST", f"/v1/models/{MLP}/labels/{{label}}:predict", "predict", id="predict"),
    pytest.param("POST", f"/v1/models/{MLP}/labels/{{label}}:classify", EXAMPLES, id="classify"),
    pytest.param("POST", f"/v1/models/{MLP}/labels/{{label}}:regress", EXAMPLES, id="regress"),
]


@pytest.mark.parametrize("label", ["latest", "canary", "beta"])
@pytest.mark.parametrize(("method", "path", "body"), LABEL_FORMS)
def test_unknown_labels_are_tf_servings_400(
    tf_rest: httpx.Client,
    gateway: httpx.Client,
    pixels: np.ndarray,
    label: str,
    method: str,
    path: str,
    body: str | None,
) -> None:
    """TF Serving's ServerCore: INVALID_ARGUMENT 'Unrecognized servable version label: l'
    (no invented `latest`; `canary` is digits-cnn's label, not digits-mlp's)."""
    content = tfserving_json.dumps({"instances": pixels[:1]}) if body == "predict" else body
    reference, arms = _exchange(tf_rest, gateway, method, path.format(label=label), content=content)
    assert reference.status_code == 400
    assert reference.json() == {"error": f"Unrecognized servable version label: {label}"}
    assert_conforms(reference, arms)


def _grpc_calls(channel: grpc.Channel, label: str, pixels: np.ndarray) -> list[Callable[[], Any]]:
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name, predict.model_spec.version_label = MLP, label
    predict.inputs["input"].CopyFrom(tf.make_tensor_proto(pixels[:1]))
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name, metadata.model_spec.version_label = MLP, label
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name, status.model_spec.version_label = MLP, label
    return [
        lambda: prediction.Predict(predict, timeout=30),
        lambda: prediction.GetModelMetadata(metadata, timeout=30),
        lambda: models.GetModelStatus(status, timeout=30),
    ]


def _grpc_outcome(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("label", ["stable", "latest", "canary"])
def test_labels_over_grpc(stack: dict, pixels: np.ndarray, label: str) -> None:
    """TF Serving's gRPC API (tensorflow-serving-api stubs): a configured label serves its
    version; any other is INVALID_ARGUMENT with the same details, on every method."""
    targets = {"reference": stack["tensorflow"]["grpc"], "gateway": stack["gateway"]["grpc"]}
    outcomes: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
    for name, target in targets.items():
        with grpc.insecure_channel(target) as channel:
            outcomes[name] = [_grpc_outcome(c) for c in _grpc_calls(channel, label, pixels)]
    assert outcomes["gateway"] == outcomes["reference"]
    expected = (
        (grpc.StatusCode.OK, "")
        if label == "stable"
        else (grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
    )
    assert outcomes["reference"] == [expected] * 3


# ---- kind 8: every TF Serving REST URL form ---------------------------------------------

PREFIXES = [
    pytest.param(MLP, "", id="mlp by model"),
    pytest.param(MLP, "/versions/1", id="mlp by version"),
    pytest.param(MLP, "/labels/stable", id="mlp by label"),
    pytest.param(CNN, "/labels/canary", id="cnn by label"),
]


@pytest.mark.parametrize(("model", "prefix"), PREFIXES)
def test_status_by_model_version_and_label(
    tf_rest: httpx.Client, gateway: httpx.Client, model: str, prefix: str
) -> None:
    """TF Serving REST API, Model status API: GET /v1/models/m[/versions/v|/labels/l]."""
    reference, arms = _exchange(tf_rest, gateway, "GET", f"/v1/models/{model}{prefix}")
    assert reference.status_code == 200
    for reply in arms.values():
        assert reply.json() == reference.json()


def _signature(body: dict) -> dict:
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    return {
        side: {
            name: (t["dtype"], [d["size"] for d in t["tensor_shape"]["dim"]])
            for name, t in signature[side].items()
        }
        for side in ("inputs", "outputs")
    } | {"method_name": signature["method_name"]}


@pytest.mark.parametrize(("model", "prefix"), PREFIXES)
def test_metadata_by_model_version_and_label(
    tf_rest: httpx.Client, gateway: httpx.Client, model: str, prefix: str
) -> None:
    """TF Serving REST API, Model Metadata API: GET /v1/models/m[/versions/v|/labels/l]/metadata.
    The gateway describes the signature from the manifest: the same model spec, tensor
    names, dtypes, shapes and method (not TF's internal graph tensor names)."""
    reference, arms = _exchange(tf_rest, gateway, "GET", f"/v1/models/{model}{prefix}/metadata")
    assert reference.status_code == 200, reference.text
    for reply in arms.values():
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_spec"] == reference.json()["model_spec"]
        assert _signature(reply.json()) == _signature(reference.json())


@pytest.mark.parametrize(("model", "prefix"), PREFIXES)
def test_predict_by_model_version_and_label(
    tf_rest: httpx.Client,
    torchserve: httpx.Client,
    gateway: httpx.Client,
    pixels: np.ndarray,
    model: str,
    prefix: str,
) -> None:
    """TF Serving REST API, Predict API: POST /v1/models/m[/versions/v|/labels/l]:predict."""
    rows = to_model_input(pixels[:2].reshape(2, 8, 8), model.split("-")[1])
    body = tfserving_json.dumps({"instances": rows})
    path = f"/v1/models/{model}{prefix}:predict"
    reference, arms = _exchange(tf_rest, gateway, "POST", path, content=body)
    assert reference.status_code == 200
    assert_conforms(reference, arms, _torch(torchserve, model, body))


@pytest.mark.parametrize("api", ["classify", "regress"])
@pytest.mark.parametrize(("model", "prefix"), PREFIXES)
@pytest.mark.parametrize(
    "body", ['{"examples": [{"x": [1.0]}]}', "{}", '{"examples": []}', "{not json"]
)
def test_classify_and_regress_on_a_predict_signature(
    tf_rest: httpx.Client, gateway: httpx.Client, api: str, model: str, prefix: str, body: str
) -> None:
    """TF Serving REST API, Classify and Regress API: the body is checked first
    (json_tensor.cc), then the model; both exports carry a predict signature, so TF
    Serving answers INVALID_ARGUMENT for it (classifier.cc / regressor.cc)."""
    path = f"/v1/models/{model}{prefix}:{api}"
    reference, arms = _exchange(tf_rest, gateway, "POST", path, content=body)
    assert reference.status_code == 400
    if body.startswith('{"examples": [{'):
        assert f"signature method_name to be tensorflow/serving/{api}." in reference.text
    assert_conforms(reference, arms)


# ---- kind 9: errors keep their headers (RFC 9110) ---------------------------------------

WRONG_METHODS = [
    ("GET", f"/v1/models/{MLP}:predict", "POST"),
    ("PUT", f"/v1/models/{MLP}/versions/1:predict", "POST"),
    ("DELETE", f"/v1/models/{MLP}/labels/stable:classify", "POST"),
    ("GET", f"/v1/models/{MLP}:regress", "POST"),
    ("POST", f"/v1/models/{MLP}", "GET"),
    ("DELETE", f"/v1/models/{MLP}/versions/1", "GET"),
    ("POST", f"/v1/models/{MLP}/labels/stable/metadata", "GET"),
    ("GET", f"/v2/models/{MLP}/infer", "POST"),
]


@pytest.mark.parametrize(("method", "path", "allowed"), WRONG_METHODS)
def test_405_carries_allow(gateway: httpx.Client, method: str, path: str, allowed: str) -> None:
    """RFC 9110 §15.5.6: the origin server MUST generate an Allow header in a 405."""
    reply = gateway.request(method, path)
    assert reply.status_code == 405
    assert allowed in {m.strip() for m in reply.headers["Allow"].split(",")}
    assert method not in reply.headers["Allow"]
