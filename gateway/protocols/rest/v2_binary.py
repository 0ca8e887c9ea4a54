"""The binary tensor data extension on v2 REST (KServe v2 / Triton).

A request body may be a JSON object followed by raw tensor data; the header
`Inference-Header-Content-Length` gives the JSON object's length. Inputs with
`parameters.binary_data_size` take their bytes from that data, in input order. Outputs go
back as binary data when the request asks (`parameters.binary_data_output`, overridden per
output by `parameters.binary_data`): the response is then the JSON object, the outputs'
bytes in output order, `Inference-Header-Content-Length` and `application/octet-stream`.
`tritonclient.http` does all of this by default.

Source: Triton, docs/protocol/extension_binary_data.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.codecs.oip_raw import datatype_of, to_raw
from gateway.core.errors import BadRequest
from gateway.protocols.rest.http import EncodedResponse
from gateway.protocols.rest.v2_json import V2Request, encode_infer

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSION = "binary_tensor_data"
_LENGTH_KEY = HEADER_LENGTH.lower().encode()


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON object, binary data) of a request body; all JSON without the header.

    Raises:
        BadRequest: a header that is not a byte count, or one past the body's end.
    """
    if header_length is None:
        return raw, b""
    if not header_length.isdigit():
        raise BadRequest(f"header {HEADER_LENGTH} must be a byte count, got '{header_length}'")
    length = int(header_length)
    if length > len(raw):
        raise BadRequest(
            f"header {HEADER_LENGTH} is {length} but the body has only {len(raw)} bytes"
        )
    return raw[:length], raw[length:]


def encode_response(
    model: str, version: int, request: V2Request, outputs: dict[str, np.ndarray]
) -> tuple[dict[str, Any], list[bytes]]:
    """The response object (`id` only when the request gave one) and the binary buffers
    of the outputs the request wants as binary data, in output order."""
    as_json = {name: value for name, value in outputs.items() if not request.binary(name)}
    body = encode_infer(model, version, request.id or "", as_json)
    if request.id is None:
        del body["id"]
    encoded = {entry["name"]: entry for entry in body["outputs"]}
    entries, buffers = [], []
    for name, value in outputs.items():
        if name in encoded:
            entries.append(encoded[name])
            continue
        data = to_raw(value)
        buffers.append(data)
        entries.append(
            {
                "name": name,
                "datatype": datatype_of(value.dtype),
                "shape": list(value.shape),
                "parameters": {"binary_data_size": len(data)},
            }
        )
    body["outputs"] = entries
    return body, buffers


def with_buffers(response: EncodedResponse, buffers: list[bytes]) -> EncodedResponse:
    """`response` (a JSON response) with the binary buffers after its JSON object."""
    if not buffers:
        return response
    headers = [
        (key, value)
        for key, value in response.raw_headers
        if key not in (b"content-length", b"content-type")
    ]
    body = b"".join([response.body, *buffers])
    headers += [
        (_LENGTH_KEY, str(len(response.body)).encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/octet-stream"),
    ]
    return EncodedResponse(body, response.status_code, headers)
