"""TF Serving's `PredictionService.Classify`, `Regress` and `MultiInference` on the gateway.

Both exports carry one signature, `serving_default`, of method `tensorflow/serving/predict`,
so these APIs can only fail; they fail as TF Serving does (with
`--enable_signature_method_name_check`, as the REST `:classify`/`:regress` routes and the
bundled server answer), never UNIMPLEMENTED while reflection lists them. In TF Serving's
order and words:

- Classify / Regress (`classification_service.cc`, `classifier.cc`, `regressor.cc`): no
  `model_spec`: INVALID_ARGUMENT "Missing ModelSpec"; the servable (NOT_FOUND "Servable not
  found for request: ..."); a signature name other than `serving_default`:
  INVALID_ARGUMENT "No signature was found with the name: <name>"; then INVALID_ARGUMENT
  "Expected classification signature method_name to be tensorflow/serving/classify. Was:
  tensorflow/serving/predict" (regression likewise).
- MultiInference (`multi_inference.cc`, `RunMultiInference`): the servable of the first
  task's model_spec; then per task: an empty model name, a model other than the first's,
  a signature named twice, a signature not in the model ("Requested signature not found in
  model graph: <name>"), then the method: classify/regress fail as above, any other method
  is UNIMPLEMENTED "Unsupported signature method_name: <method>".
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import grpc

from gateway._proto.tfserving import (
    ClassificationRequest,
    ClassificationResponse,
    MultiInferenceRequest,
    MultiInferenceResponse,
    RegressionRequest,
    RegressionResponse,
)
from gateway.catalog import SERVING_SIGNATURE
from gateway.context import GatewayContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.protocols import tf_texts
from gateway.protocols.grpc.common import Boundary, Call
from wire.tfserving_json import SIGNATURE_METHODS, wrong_method

_PREDICT_METHOD = SIGNATURE_METHODS["predict"]
_API_OF_METHOD = {
    SIGNATURE_METHODS["classify"]: "classify",
    SIGNATURE_METHODS["regress"]: "regress",
}


class Unimplemented(GatewayError):
    """TF Serving's UNIMPLEMENTED for a MultiInference task of another method (HTTP 501)."""

    status = HTTPStatus.NOT_IMPLEMENTED
    grpc_code = grpc.StatusCode.UNIMPLEMENTED


def _resolve(ctx: GatewayContext, spec: Any) -> None:
    """The servable a ModelSpec names exists (TF Serving's NOT_FOUND words otherwise)."""
    choice = spec.WhichOneof("version_choice")
    version = int(spec.version.value) if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    tf_texts.resolve(ctx.catalog.get(spec.name), version, label)


def _signature(spec: Any) -> str:
    return spec.signature_name or SERVING_SIGNATURE


def _check_signature_api(spec: Any, api: str, not_found: str) -> None:
    """The one signature served is a predict signature: `api` cannot use it."""
    name = _signature(spec)
    if name != SERVING_SIGNATURE:
        raise BadRequest(f"{not_found}{name}")
    raise BadRequest(wrong_method(api, _PREDICT_METHOD))


class SignatureApis:
    """Classify, Regress and MultiInference for predict-only signatures."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def classify(self, request: Any, call: Call) -> Any:
        self._single(request, call, "classify")

    async def regress(self, request: Any, call: Call) -> Any:
        self._single(request, call, "regress")

    def _single(self, request: Any, call: Call, api: str) -> None:
        self.ctx.auth.check_predict(call.headers)
        if not request.HasField("model_spec"):
            raise BadRequest("Missing ModelSpec")
        _resolve(self.ctx, request.model_spec)
        _check_signature_api(request.model_spec, api, "No signature was found with the name: ")

    async def multi_inference(self, request: Any, call: Call) -> Any:
        self.ctx.auth.check_predict(call.headers)
        if not request.tasks:  # TF Serving looks up a default ModelSpec: no model ''
            self.ctx.catalog.get("")
        first = request.tasks[0].model_spec
        _resolve(self.ctx, first)
        seen: set[str] = set()
        for task in request.tasks:
            _check_task(task, first.name, seen)
        return MultiInferenceResponse()  # unreachable: every task fails


def _check_task(task: Any, model: str, seen: set[str]) -> None:
    spec = task.model_spec
    if not spec.name:
        raise BadRequest("Found ModelSpec with an empty model name.")
    if spec.name != model:
        raise BadRequest(
            "All ModelSpecs in a MultiInferenceRequest must access the same model name."
        )
    name = _signature(spec)
    if name in seen:
        raise BadRequest(f"Duplicate evaluation of signature: {name}")
    seen.add(name)
    if name != SERVING_SIGNATURE:
        raise BadRequest(f"Requested signature not found in model graph: {name}")
    api = _API_OF_METHOD.get(task.method_name)
    if api is None:
        raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")
    raise BadRequest(wrong_method(api, _PREDICT_METHOD))


def _first_model(request: Any) -> str:
    return request.tasks[0].model_spec.name if request.tasks else ""


_SERVICE = "tensorflow.serving.PredictionService"


def signature_api_methods(
    ctx: GatewayContext, boundary: Boundary
) -> dict[str, grpc.RpcMethodHandler]:
    """`PredictionService` handlers for Classify, Regress and MultiInference (prediction
    methods: admission, auth and error counting as Predict)."""
    apis = SignatureApis(ctx)
    return {
        "Classify": boundary.unary(
            apis.classify,
            ClassificationRequest,
            ClassificationResponse,
            lambda m: m.model_spec.name,
            rpc=f"{_SERVICE}/Classify",
        ),
        "Regress": boundary.unary(
            apis.regress,
            RegressionRequest,
            RegressionResponse,
            lambda m: m.model_spec.name,
            rpc=f"{_SERVICE}/Regress",
        ),
        "MultiInference": boundary.unary(
            apis.multi_inference,
            MultiInferenceRequest,
            MultiInferenceResponse,
            _first_model,
            rpc=f"{_SERVICE}/MultiInference",
        ),
    }
