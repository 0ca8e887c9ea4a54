"""TF Serving over REST: `POST /v1/models/{model}[/versions/{v}]:predict`, readiness by
`GET /v1/models/{model}`.

Columnar JSON both ways. TF Serving's REST answer does not say which version ran, so the
reported version is the one asked for.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

import orjson

from gateway.core.types import Framework, InferRequest
from gateway.upstreams.kinds.bodies import columnar_json, columnar_outputs
from gateway.upstreams.failures import Target
from gateway.upstreams.pooled import Decoded
from gateway.upstreams.transports.rest_session import RestCall

_JSON = {"Content-Type": "application/json"}


class TFServingRest:
    """TF Serving's REST bodies (a `Codec` for `PooledUpstream` over `RestWire`)."""

    framework: Framework = "tensorflow"

    def encode(self, request: InferRequest) -> RestCall:
        body = columnar_json(request.inputs, request.parameters.get("signature_name"))
        return RestCall("POST", predict_path(request.model, request.version), body, _JSON)

    def decode(self, answer: bytes, request: InferRequest, target: Target) -> Decoded:
        return Decoded(columnar_outputs(answer, request.outputs, target))

    def probe(self, model: str) -> RestCall:
        return RestCall("GET", f"/v1/models/{quote(model, safe='')}")

    def is_ready(self, answer: bytes) -> bool:
        """The model status lists an AVAILABLE version."""
        try:
            statuses = orjson.loads(answer).get("model_version_status", [])
        except (orjson.JSONDecodeError, AttributeError):
            return False
        return any(isinstance(s, dict) and s.get("state") == "AVAILABLE" for s in statuses)


@lru_cache(maxsize=1024)  # a few models and versions: quoting is most of the work
def predict_path(model: str, version: int | None) -> str:
    """`/v1/models/{m}[/versions/{v}]:predict`."""
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    return path + ":predict"
