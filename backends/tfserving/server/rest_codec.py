"""The bundled server's side of TF Serving's REST JSON: the shared codec
(`wire/tfserving_json.py`) with its errors mapped to `InvalidArgument`, plus the
status and error bodies only this server writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from wire import tfserving_json as codec
from backends.tfserving.server.errors import InvalidArgument
from backends.tfserving.server.manager import VersionStatus
from backends.tfserving.server.signature import SignatureInfo, check_input_names

PredictBody = codec.PredictBody

_invalid_argument = partial(codec.errors_as, InvalidArgument)
"""The codec's errors are TF Serving's INVALID_ARGUMENT (HTTP 400)."""


def parse_predict_body(raw: bytes) -> PredictBody:
    """Parse and shape-check the JSON body; tensors are converted later, per signature."""
    with _invalid_argument():
        return codec.parse_predict(codec.loads(raw))


def parse_examples_body(raw: bytes) -> dict[str, Any]:
    """A `:classify` / `:regress` body: a JSON object with a non-empty `examples` list."""
    with _invalid_argument():
        document = codec.load_object(raw)
        codec.check_examples(document)
    return document


def decode_inputs(body: PredictBody, sig: SignatureInfo) -> dict[str, np.ndarray]:
    """The body's tensors as numpy arrays of the signature's dtypes."""
    with _invalid_argument():
        values = codec.named_values(body, list(sig.inputs))
    check_input_names(sig, values)
    with _invalid_argument():
        return {name: codec.to_array(v, name, sig.inputs[name].dtype) for name, v in values.items()}


def encode_predictions(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """TF Serving's response: `predictions` (row) or `outputs` (columnar)."""
    with _invalid_argument():
        return codec.encode_predict(outputs, row_format)


def encode_status(statuses: Sequence[VersionStatus]) -> bytes:
    """GetModelStatus as TF Serving's REST API prints it."""
    body = {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for s in statuses
        ]
    }
    return codec.dumps(body)


def encode_error(message: str) -> bytes:
    return codec.dumps({"error": message})


def dumps(value: Any) -> bytes:
    return codec.dumps(value)
