"""The official Open Inference Protocol clients (`tritonclient`), run in their own venv.

tritonclient 2.73.0 pins protobuf<7, greenlet<3.4 and ml-dtypes<=0.5.4, which clash with
the project's own requirements, so scripts/setup.sh installs it into `.venv-clients/`
(requirements-clients.lock) and the project's `pip check` stays clean. The tests call it
through `call()`: this same file, run by that venv's Python, does one client operation and
answers in JSON on stdout. Arrays cross as raw bytes (dtype, shape, base64), exactly.

This file imports only the standard library and numpy at the top, so that it runs in
either venv; tritonclient is imported only in the operations (the clients' side).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIENTS_PYTHON_ENV = "DUALSERVE_CLIENTS_PYTHON"
"""Overrides the clients' interpreter (default: .venv-clients/bin/python in the repository)."""
TIMEOUT_S = 120


class TritonClientError(Exception):
    """tritonclient raised `InferenceServerException`; `status` is its status() text
    (e.g. "StatusCode.INVALID_ARGUMENT" over gRPC, "400" over HTTP)."""

    def __init__(self, status: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- arrays across the process boundary --------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            items = [base64.b64encode(bytes(v)).decode() for v in value.ravel()]
            return {"__ndarray__": "object", "shape": list(value.shape), "items": items}
        data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "data": data}
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            shape = tuple(value["shape"])
            if value["__ndarray__"] == "object":
                items = [base64.b64decode(v) for v in value["items"]]
                out = np.empty(len(items), dtype=object)
                out[:] = items
                return out.reshape(shape)
            raw = base64.b64decode(value["data"])
            return np.frombuffer(raw, dtype=np.dtype(value["__ndarray__"])).reshape(shape).copy()
        if "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# --- the tests' side ---------------------------------------------------------------------


def clients_python() -> Path:
    """The interpreter of the clients' venv."""
    return Path(os.environ.get(CLIENTS_PYTHON_ENV) or REPO / ".venv-clients/bin/python")


def call(operation: str, **arguments: Any) -> dict[str, Any]:
    """Run one operation of `OPERATIONS` with tritonclient in the clients' venv.

    Args:
        operation: a name in `OPERATIONS`.
        arguments: its keyword arguments; numpy arrays and bytes cross exactly.

    Returns:
        The operation's answer (arrays decoded).

    Raises:
        TritonClientError: tritonclient raised InferenceServerException.
        RuntimeError: the clients' venv is missing or the operation crashed.
    """
    python = clients_python()
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run scripts/setup.sh (it makes .venv-clients/)")
    payload = json.dumps({"operation": operation, "arguments": _encode(arguments)})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [str(python), str(Path(__file__).resolve())],
        input=payload, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"tritonclient {operation} failed:\n{done.stderr[-3000:]}")
    answer = _decode(json.loads(done.stdout))
    if "error" in answer:
        raise TritonClientError(answer["error"]["status"], answer["error"]["message"])
    return dict(answer)


# --- the clients' side (run in .venv-clients) --------------------------------------------


def _http_inputs(inputs: list[dict[str, Any]]) -> list[Any]:
    import tritonclient.http as triton_http

    tensors = []
    for spec in inputs:
        tensor = triton_http.InferInput(spec["name"], list(spec["array"].shape), spec["datatype"])
        tensor.set_data_from_numpy(spec["array"], binary_data=spec.get("binary", True))
        tensors.append(tensor)
    return tensors


def _http_outputs(outputs: list[dict[str, Any]] | None) -> list[Any] | None:
    import tritonclient.http as triton_http

    if outputs is None:
        return None
    return [
        triton_http.InferRequestedOutput(o["name"], binary_data=o.get("binary", True))
        for o in outputs
    ]


def _grpc_inputs(inputs: list[dict[str, Any]]) -> list[Any]:
    import tritonclient.grpc as triton_grpc

    tensors = []
    for spec in inputs:
        tensor = triton_grpc.InferInput(spec["name"], list(spec["array"].shape), spec["datatype"])
        tensor.set_data_from_numpy(spec["array"])
        tensors.append(tensor)
    return tensors


def _as_numpy(result: Any, names: list[str]) -> dict[str, Any]:
    return {name: result.as_numpy(name) for name in names}


def http_health(url: str, model: str) -> dict[str, Any]:
    """Server and model readiness, and the server's metadata, over v2 REST."""
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(url=url, network_timeout=30)
    try:
        return {
            "server_ready": client.is_server_ready(),
            "model_ready": client.is_model_ready(model),
            "server_metadata": client.get_server_metadata(),
        }
    finally:
        client.close()


def http_infer(
    url: str,
    model: str,
    inputs: list[dict[str, Any]],
    want: list[str],
    outputs: list[dict[str, Any]] | None = None,
    request_id: str = "",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`InferenceServerClient.infer` over v2 REST: `want`'s outputs (None where absent) and
    the response's JSON header (`get_response()`)."""
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(url=url, network_timeout=30)
    try:
        result = client.infer(
            model, _http_inputs(inputs), outputs=_http_outputs(outputs),
            request_id=request_id, headers=headers,
        )  # fmt: skip
        return {"outputs": _as_numpy(result, want), "response": result.get_response()}
    finally:
        client.close()


def grpc_health(url: str, model: str) -> dict[str, Any]:
    """Liveness, readiness and the model's metadata over the v2 gRPC service."""
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(url=url)
    try:
        metadata = client.get_model_metadata(model)
        return {
            "server_live": client.is_server_live(),
            "server_ready": client.is_server_ready(),
            "model_ready": client.is_model_ready(model),
            "input_datatypes": [i.datatype for i in metadata.inputs],
            "versions": list(metadata.versions),
        }
    finally:
        client.close()


def grpc_infer(
    url: str,
    model: str,
    inputs: list[dict[str, Any]],
    want: list[str],
    outputs: list[str] | None = None,
    request_id: str = "",
    headers: dict[str, str] | None = None,
    channel_args: list[list[Any]] | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """`InferenceServerClient.infer` over the v2 gRPC service, `repeat` times with a new
    client each time: the last answer's `want` outputs (None where absent) and its id."""
    import tritonclient.grpc as triton_grpc

    options = [tuple(option) for option in channel_args] if channel_args else None
    requested = [triton_grpc.InferRequestedOutput(name) for name in outputs or []]
    answer: dict[str, Any] = {}
    for _ in range(repeat):
        client = triton_grpc.InferenceServerClient(url=url, channel_args=options)
        try:
            result = client.infer(
                model, _grpc_inputs(inputs), outputs=requested or None,
                request_id=request_id, headers=headers,
            )  # fmt: skip
            answer = {"outputs": _as_numpy(result, want), "id": result.get_response().id}
        finally:
            client.close()
    return answer


def encode_request(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None, request_id: str = ""
) -> dict[str, Any]:
    """tritonclient.http's own request body: (body bytes, JSON header length or None)."""
    from tritonclient.http._utils import _get_inference_request

    body, json_size = _get_inference_request(
        _http_inputs(inputs), request_id, _http_outputs(outputs), 0, False, False, 0, None, None
    )
    return {"body": bytes(body), "json_size": json_size}


def decode_response(body: bytes, header_length: int | None, want: list[str]) -> dict[str, Any]:
    """tritonclient.http's own reading of a response body: `want`'s outputs."""
    import tritonclient.http as triton_http

    result = triton_http.InferResult.from_response_body(body, header_length=header_length)
    return {"outputs": _as_numpy(result, want)}


def serialize_bytes(array: Any) -> dict[str, Any]:
    """tritonclient.utils.serialize_byte_tensor: a BYTES tensor's raw layout."""
    from tritonclient.utils import serialize_byte_tensor

    return {"raw": serialize_byte_tensor(array).item()}


def deserialize_bytes(raw: bytes) -> dict[str, Any]:
    """tritonclient.utils.deserialize_bytes_tensor: the elements of a raw BYTES tensor."""
    from tritonclient.utils import deserialize_bytes_tensor

    return {"array": deserialize_bytes_tensor(raw)}


OPERATIONS = {
    f.__name__: f
    for f in (
        http_health, http_infer, grpc_health, grpc_infer,
        encode_request, decode_response, serialize_bytes, deserialize_bytes,
    )
}  # fmt: skip


def _main() -> None:
    from tritonclient.utils import InferenceServerException

    request = json.loads(sys.stdin.read())
    try:
        answer = OPERATIONS[request["operation"]](**_decode(request["arguments"]))
    except InferenceServerException as exc:
        status = exc.status()
        answer = {"error": {"status": None if status is None else str(status),
                            "message": exc.message()}}  # fmt: skip
    json.dump(_encode(answer), sys.stdout)


if __name__ == "__main__":
    _main()
