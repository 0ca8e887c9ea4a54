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

import asyncio
import base64
import json
import os
import queue
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
    (e.g. "StatusCode.INVALID_ARGUMENT" over gRPC, "400" over HTTP), `text` its str()
    ("[status] message")."""

    def __init__(self, status: str | None, message: str, text: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.text = message if text is None else text


# --- arrays across the process boundary --------------------------------------------------


def _encode_item(item: Any) -> Any:
    """One element of an object array: bytes as base64 text, str as {"str": text}."""
    if isinstance(item, str):
        return {"str": item}
    return base64.b64encode(bytes(item)).decode()


def _decode_item(item: Any) -> Any:
    return item["str"] if isinstance(item, dict) else base64.b64decode(item)


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            items = [_encode_item(v) for v in value.ravel()]
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
                items = [_decode_item(v) for v in value["items"]]
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
        raise _client_error(answer["error"])
    return dict(answer)


def _client_error(error: dict[str, Any]) -> TritonClientError:
    return TritonClientError(error["status"], error["message"], error.get("text"))


def client_methods(
    protocol: str, url: str, *calls: tuple[str, list[Any], dict[str, Any]]
) -> list[Any]:
    """Methods of one tritonclient `InferenceServerClient` ("http" or "grpc"), in order
    (the `client_calls` operation): each call is (method, args, kwargs).

    Returns:
        Per call, its JSON answer, or the TritonClientError it raised (returned, not
        raised, so that a test can assert the refusal and go on).
    """
    answer = call("client_calls", protocol=protocol, url=url, calls=[list(c) for c in calls])
    return [_client_error(r["error"]) if "error" in r else r["value"] for r in answer["results"]]


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
        triton_http.InferRequestedOutput(
            o["name"], binary_data=o.get("binary", True), class_count=o.get("class_count", 0)
        )
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


def _grpc_outputs(outputs: list[str | dict[str, Any]] | None) -> list[Any] | None:
    """`InferRequestedOutput`s: a name, or {"name", "class_count"}; None when none."""
    import tritonclient.grpc as triton_grpc

    specs = [{"name": o} if isinstance(o, str) else o for o in outputs or []]
    requested = [
        triton_grpc.InferRequestedOutput(o["name"], class_count=o.get("class_count", 0))
        for o in specs
    ]
    return requested or None


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
    repeat: int = 1,
    aio: bool = False,
) -> dict[str, Any]:
    """`InferenceServerClient.infer` over v2 REST (`tritonclient.http`, or
    `tritonclient.http.aio` when `aio`), `repeat` times on one client: the last answer's
    `want` outputs (None where absent) and its JSON header (`get_response()`)."""
    if aio:
        return asyncio.run(_http_infer_aio(url, model, inputs, want, outputs, request_id, headers))
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(url=url, network_timeout=30)
    answer: dict[str, Any] = {}
    try:
        for _ in range(repeat):
            result = client.infer(
                model, _http_inputs(inputs), outputs=_http_outputs(outputs),
                request_id=request_id, headers=headers,
            )  # fmt: skip
            answer = {"outputs": _as_numpy(result, want), "response": result.get_response()}
        return answer
    finally:
        client.close()


async def _http_infer_aio(
    url: str,
    model: str,
    inputs: list[dict[str, Any]],
    want: list[str],
    outputs: list[dict[str, Any]] | None,
    request_id: str,
    headers: dict[str, str] | None,
) -> dict[str, Any]:
    import tritonclient.http.aio as triton_http_aio

    client = triton_http_aio.InferenceServerClient(url=url, conn_timeout=30)
    try:
        result = await client.infer(
            model, _http_inputs(inputs), outputs=_http_outputs(outputs),
            request_id=request_id, headers=headers,
        )  # fmt: skip
        return {"outputs": _as_numpy(result, want), "response": result.get_response()}
    finally:
        await client.close()


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
    outputs: list[str | dict[str, Any]] | None = None,
    request_id: str = "",
    headers: dict[str, str] | None = None,
    channel_args: list[list[Any]] | None = None,
    repeat: int = 1,
    aio: bool = False,
) -> dict[str, Any]:
    """`InferenceServerClient.infer` over the v2 gRPC service (`tritonclient.grpc`, or
    `tritonclient.grpc.aio` when `aio`), `repeat` times with a new client each time: the
    last answer's `want` outputs (None where absent) and its id. `outputs` are names or
    {"name", "class_count"} (the classification extension)."""
    if aio:
        return asyncio.run(_grpc_infer_aio(url, model, inputs, want, outputs, request_id, headers))
    import tritonclient.grpc as triton_grpc

    options = [tuple(option) for option in channel_args] if channel_args else None
    answer: dict[str, Any] = {}
    for _ in range(repeat):
        client = triton_grpc.InferenceServerClient(url=url, channel_args=options)
        try:
            result = client.infer(
                model, _grpc_inputs(inputs), outputs=_grpc_outputs(outputs),
                request_id=request_id, headers=headers,
            )  # fmt: skip
            answer = {"outputs": _as_numpy(result, want), "id": result.get_response().id}
        finally:
            client.close()
    return answer


async def _grpc_infer_aio(
    url: str,
    model: str,
    inputs: list[dict[str, Any]],
    want: list[str],
    outputs: list[str | dict[str, Any]] | None,
    request_id: str,
    headers: dict[str, str] | None,
) -> dict[str, Any]:
    import tritonclient.grpc.aio as triton_grpc_aio

    client = triton_grpc_aio.InferenceServerClient(url=url)
    try:
        result = await client.infer(
            model, _grpc_inputs(inputs), outputs=_grpc_outputs(outputs),
            request_id=request_id, headers=headers,
        )  # fmt: skip
        return {"outputs": _as_numpy(result, want), "id": result.get_response().id}
    finally:
        await client.close()


def grpc_stream(
    url: str,
    inputs: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    want: list[str],
    start: dict[str, Any] | None = None,
    answer_timeout_s: float = 30,
) -> dict[str, Any]:
    """One `start_stream` / `async_stream_infer` stream (tritonclient.grpc): each message is
    async_stream_infer's keyword arguments (model_name, request_id, model_version, and
    outputs as for `grpc_infer`), all with `inputs`; `start` is start_stream's (headers,
    stream_timeout). Sending stops at the first InferenceServerException (the stream
    ended). Waits for one answer per message sent (at least one), each at most
    `answer_timeout_s` seconds (queue.Empty past it).

    Returns:
        {"answers": in arrival order, each {"id", "outputs"} for a result or
        {"error": str(the callback's error)}}.
    """
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    client = triton_grpc.InferenceServerClient(url=url)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    try:
        client.start_stream(
            callback=lambda result, error: answers.put((result, error)), **(start or {})
        )
        sent = 0
        for message in messages:
            arguments = {**message, "outputs": _grpc_outputs(message.get("outputs"))}
            try:
                client.async_stream_infer(inputs=_grpc_inputs(inputs), **arguments)
            except InferenceServerException:  # the stream ended: its error is in answers
                break
            sent += 1
        got = [answers.get(timeout=answer_timeout_s) for _ in range(max(sent, 1))]
        client.stop_stream()
    finally:
        client.close()
    return {"answers": [_stream_answer(result, error, want) for result, error in got]}


def _stream_answer(result: Any, error: Any, want: list[str]) -> dict[str, Any]:
    if result is None:
        return {"error": str(error)}
    return {"id": result.get_response().id, "outputs": _as_numpy(result, want)}


def grpc_aio_stream(
    url: str, inputs: list[dict[str, Any]], messages: list[dict[str, Any]], want: list[str]
) -> dict[str, Any]:
    """`tritonclient.grpc.aio`'s `stream_infer` over an async iterator of `messages`
    (model_name, request_id), all with `inputs`: the answers as `grpc_stream`'s."""

    async def run() -> list[dict[str, Any]]:
        import tritonclient.grpc.aio as triton_grpc_aio

        client = triton_grpc_aio.InferenceServerClient(url)

        async def requests() -> Any:
            for message in messages:
                yield {**message, "inputs": _grpc_inputs(inputs)}

        try:
            return [
                _stream_answer(result, error, want)
                async for result, error in client.stream_infer(requests())
            ]
        finally:
            await client.close()

    return {"answers": asyncio.run(run())}


def client_calls(protocol: str, url: str, calls: list[list[Any]]) -> dict[str, Any]:
    """Methods of one `InferenceServerClient` (tritonclient.http or .grpc), in order: each
    call is [method name, positional arguments, keyword arguments], and answers JSON
    (e.g. get_server_metadata, is_model_ready, get_inference_statistics, get_model_config,
    get_model_repository_index; pass as_json=True over gRPC).

    Returns:
        {"results": per call, {"value": its return} or {"error": {"status", "message",
        "text"}} where it raised InferenceServerException (text: its str())}.
    """
    from tritonclient.utils import InferenceServerException

    if protocol == "http":
        import tritonclient.http as triton_http

        client: Any = triton_http.InferenceServerClient(url=url, network_timeout=30)
    else:
        import tritonclient.grpc as triton_grpc

        client = triton_grpc.InferenceServerClient(url=url)
    results: list[dict[str, Any]] = []
    try:
        for method, args, kwargs in calls:
            try:
                results.append({"value": getattr(client, method)(*args, **kwargs)})
            except InferenceServerException as exc:
                results.append({"error": _error(exc)})
    finally:
        client.close()
    return {"results": results}


class _NumpyOneCopy:
    """numpy, but `array(obj, copy=False)` means numpy 1's "copy only if needed" (numpy
    2's copy=None; numpy 2 raises ValueError for copy=False where a copy is needed).

    tritonclient 2.73.0's grpc `InferResult.as_numpy` reads typed `bytes_contents` with
    `np.array(output.contents.bytes_contents, copy=False)`, which raises under numpy 2
    (the clients' lock has 2.4.6); numpy's migration guide gives np.asarray as the
    equivalent, "no behavior change in NumPy 1.x". Everything else is numpy itself."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def array(obj: Any, *args: Any, copy: bool | None = True, **kwargs: Any) -> Any:
        return np.array(obj, *args, copy=None if copy is False else copy, **kwargs)


def decode_grpc_response(message: bytes, want: list[str]) -> dict[str, Any]:
    """tritonclient.grpc's own reading (`InferResult.as_numpy`) of a serialized
    ModelInferResponse: `want`'s outputs (None where absent). Typed BYTES contents come
    back as numpy 1 read them (a fixed-width bytes array; see `_NumpyOneCopy`)."""
    import tritonclient.grpc as triton_grpc
    import tritonclient.grpc._infer_result as infer_result
    from tritonclient.grpc import service_pb2

    infer_result.np = _NumpyOneCopy()  # type: ignore[assignment]  # (this process only)
    response = service_pb2.ModelInferResponse.FromString(message)
    return {"outputs": _as_numpy(triton_grpc.InferResult(response), want)}


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
    """tritonclient.http's own reading of a response body: `want`'s outputs (as_numpy)
    and their JSON descriptions (get_output: name, datatype, shape, parameters)."""
    import tritonclient.http as triton_http

    result = triton_http.InferResult.from_response_body(body, header_length=header_length)
    described = {name: result.get_output(name) for name in want}
    return {"outputs": _as_numpy(result, want), "described": described}


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
        http_health, http_infer, grpc_health, grpc_infer, grpc_stream, grpc_aio_stream,
        client_calls, encode_request, decode_response, decode_grpc_response,
        serialize_bytes, deserialize_bytes,
    )
}  # fmt: skip


def _error(exc: Any) -> dict[str, Any]:
    status = exc.status()
    return {
        "status": None if status is None else str(status),
        "message": exc.message(),
        "text": str(exc),
    }


def _main() -> None:
    from tritonclient.utils import InferenceServerException

    request = json.loads(sys.stdin.read())
    try:
        answer = OPERATIONS[request["operation"]](**_decode(request["arguments"]))
    except InferenceServerException as exc:
        answer = {"error": _error(exc)}
    json.dump(_encode(answer), sys.stdout)


if __name__ == "__main__":
    _main()
