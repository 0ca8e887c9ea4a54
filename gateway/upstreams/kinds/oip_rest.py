"""Any Open Inference Protocol server over REST: `POST /v2/models/{m}[/versions/{v}]/infer`
with the binary tensor data extension both ways, readiness by
`GET /v2/models/{m}/ready`.

The request is a JSON header naming each input's datatype, shape and
`binary_data_size`, followed by the inputs' raw bytes (header length in
`Inference-Header-Content-Length`); every output is asked as binary data
(`binary_data_output`). The answer is read the same way: its JSON object first (its end
found by parsing it, since the wire hands over the body only), then each output's
`binary_data_size` bytes in output order; an output the server sent as JSON `data` is read
too. The version that ran is the answer's `model_version`.

Source: KServe's Open Inference Protocol (REST) and Triton's
docs/protocol/extension_binary_data.md; what tritonclient.http sends by default.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from gateway.codecs.oip_raw import DATATYPES, datatype_of, from_raw, to_raw
from gateway.core.errors import GatewayError, UpstreamError
from gateway.core.types import Framework, InferRequest
from gateway.upstreams.failures import Target
from gateway.upstreams.pooled import Decoded
from gateway.upstreams.transports.rest_session import RestCall

HEADER_LENGTH = "Inference-Header-Content-Length"
_DECODER = json.JSONDecoder()


class OipRest:
    """OIP v2 REST bodies (a `Codec` for `PooledUpstream` over `RestWire`).

    Args:
        framework: the arm this server serves (`pytorch` for the `.pt2` export).
    """

    def __init__(self, framework: Framework = "pytorch") -> None:
        self.framework: Framework = framework

    def encode(self, request: InferRequest) -> RestCall:
        header, buffers = infer_header(request)
        head = orjson.dumps(header)
        headers = {HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"}
        return RestCall(
            "POST", infer_path(request.model, request.version), b"".join([head, *buffers]), headers
        )

    def decode(self, answer: bytes, request: InferRequest, target: Target) -> Decoded:
        try:
            header, offset = split_answer(answer)
            outputs = read_outputs(header, answer, offset)
        except (ValueError, TypeError, KeyError, GatewayError) as exc:
            raise UpstreamError(target.backend, f"{target}: unreadable OIP answer ({exc})") from exc
        version = str(header.get("model_version", ""))
        return Decoded(outputs, int(version) if version.isdigit() else None)

    def probe(self, model: str) -> RestCall:
        return RestCall("GET", f"/v2/models/{quote(model, safe='')}/ready")

    def is_ready(self, answer: bytes) -> bool:
        """A 2xx answer (the wire raised on any other): Triton's is empty, KServe's says
        `"ready": true`."""
        if not answer.strip():
            return True
        try:
            body = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return False
        return not isinstance(body, dict) or body.get("ready", True) is not False


def infer_path(model: str, version: int | None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    return path + "/infer"


def infer_header(request: InferRequest) -> tuple[dict[str, Any], list[bytes]]:
    """The JSON header of an infer request and its inputs' raw bytes, in input order."""
    inputs, buffers = [], []
    for name, value in request.inputs.items():
        datatype = datatype_of(value.dtype)
        data = to_raw(value, datatype)
        buffers.append(data)
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(value.shape),
                "parameters": {"binary_data_size": len(data)},
            }
        )
    header: dict[str, Any] = {"id": request.request_id, "inputs": inputs}
    if request.outputs:
        header["outputs"] = [
            {"name": n, "parameters": {"binary_data": True}} for n in request.outputs
        ]
    else:
        header["parameters"] = {"binary_data_output": True}
    return header, buffers


def split_answer(answer: bytes) -> tuple[dict[str, Any], int]:
    """The answer's JSON object and the offset of the binary data after it."""
    # latin-1 maps each byte to one character, so the JSON's end is its byte length
    _, end = _DECODER.raw_decode(answer.decode("latin-1"))
    header = orjson.loads(answer[:end])  # as UTF-8: names may hold non-ASCII characters
    if not isinstance(header, dict):
        raise ValueError("the answer is not a JSON object")
    return header, end


def read_outputs(header: dict[str, Any], answer: bytes, offset: int) -> dict[str, np.ndarray]:
    outputs = {}
    for entry in header.get("outputs", []):
        name, datatype, shape = entry["name"], entry["datatype"], list(entry["shape"])
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            outputs[name] = from_raw(name, datatype, shape, answer[offset : offset + int(size)])
            offset += int(size)
        else:
            outputs[name] = np.asarray(entry["data"], dtype=DATATYPES[datatype]).reshape(shape)
    if offset != len(answer):
        raise ValueError(f"{len(answer) - offset} bytes of binary data belong to no output")
    return outputs
