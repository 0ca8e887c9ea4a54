"""The wire bodies as pydantic models, for the OpenAPI document only.

The routes parse bodies with their own codecs (`tfserving_json`, `v2_json`, ...); these
models describe the same formats so that `GET /openapi.json` tells client generators and
API gateways what each route takes and answers. A schema here is never looser than its
codec where a looser one would call a refused body valid.

Sources: TF Serving "RESTful API" (request/response formats, model status and metadata);
KServe Open Inference Protocol "HTTP/REST" (server/model metadata, inference request and
response JSON objects); Triton docs/protocol/extension_binary_data.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.codecs.oip_raw import DATATYPES


def _datatype() -> Any:
    return Field(description="an OIP datatype", json_schema_extra={"enum": list(DATATYPES)})


_NOT_FEEDBACK: dict[str, Any] = {"not": {"required": ["feedback"]}}


class ErrorBody(BaseModel):
    """Every error, on TF Serving and v2 routes alike."""

    error: str = Field(description="what went wrong, naming the field, tensor or limit")


# --- TF Serving REST


class PredictRequest(BaseModel):
    """TF Serving's predict request: row (`instances`) or columnar (`inputs`) format."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}]}
    )

    signature_name: str = Field(
        None,  # type: ignore[assignment]
        description="only serving_default is served",
        json_schema_extra={"enum": ["", "serving_default"]},
    )
    instances: list[Any] = Field(
        None,  # type: ignore[arg-type]
        description="row format: one entry per example (at least one)",
        json_schema_extra={"minItems": 1},
    )
    inputs: Any = Field(
        None,
        description="columnar format: a tensor, or named tensors",
        json_schema_extra={"not": {"type": "null"}},
    )


class PredictResponse(BaseModel):
    """`predictions` for a row request, `outputs` for a columnar one."""

    predictions: list[Any] | None = None
    outputs: Any = None


class VersionStatus(BaseModel):
    version: str
    state: str = Field(description="AVAILABLE for every served version")
    status: dict[str, str] = Field(description="error_code and error_message")


class ModelStatusResponse(BaseModel):
    model_version_status: list[VersionStatus]


class TfModelMetadataResponse(BaseModel):
    """`model_spec` and `metadata.signature_def` as TF Serving writes them."""

    model_spec: dict[str, Any]
    metadata: dict[str, Any]


# --- Open Inference Protocol v2


class RequestInput(BaseModel):
    name: str
    shape: list[int] = Field(description="non-negative dimensions")
    datatype: str = _datatype()
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: bytes after the JSON object"
    )
    data: list[Any] | None = Field(None, description="flat or nested, of the datatype's JSON type")


class OutputParameters(BaseModel):
    """A requested output's parameters; others are ignored, `class_count` is refused."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"not": {"required": ["class_count"]}}
    )

    binary_data: bool | SkipJsonSchema[None] = Field(
        None, description="true: this output as binary data"
    )
    classification: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        None,
        description="K: the top K classes of a [batch, classes] output as BYTES "
        '"score:index" (classification extension)',
    )


class RequestOutput(BaseModel):
    name: str
    parameters: OutputParameters | None = None


class InferenceRequest(BaseModel):
    """The inference request JSON object; with `Inference-Header-Content-Length` it is
    followed by the inputs' binary data (binary tensor data extension)."""

    id: str | None = Field(None, description="echoed as the response's id")
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_output: true for binary outputs"
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str = _datatype()
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size when binary")
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = Field(None, description="the request's id, when it gave one")
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str = _datatype()
    shape: list[int] = Field(description="-1 for a variable dimension")


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


# --- Triton extensions: statistics, model configuration, repository index


class StatisticDuration(BaseModel):
    count: int = Field(ge=0)
    ns: int = Field(ge=0, description="total duration in nanoseconds")


class InferStatistics(BaseModel):
    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    cache_hit: StatisticDuration
    cache_miss: StatisticDuration


class VersionStatisticsBody(BaseModel):
    name: str
    version: str
    last_inference: int = Field(ge=0, description="ms since the epoch of the last success")
    inference_count: int = Field(ge=0)
    execution_count: int = Field(ge=0)
    inference_stats: InferStatistics
    batch_stats: list[dict[str, Any]]


class ModelStatisticsResponse(BaseModel):
    """Triton's statistics extension (docs/protocol/extension_statistics.md)."""

    model_stats: list[VersionStatisticsBody]


class ModelTensorConfig(BaseModel):
    name: str
    data_type: str = Field(description="TYPE_FP32, TYPE_INT64, ... (model_config.proto)")
    dims: list[int] = Field(description="without the batch dimension; -1 is variable")
    reshape: dict[str, list[int]] | None = Field(None, description="the tensor's own shape")


class ModelConfigResponse(BaseModel):
    """Triton's model configuration extension: a read-only `ModelConfig` from the catalog."""

    name: str
    platform: str
    backend: str
    version_policy: dict[str, Any]
    max_batch_size: int = Field(ge=0)
    input: list[ModelTensorConfig]
    output: list[ModelTensorConfig]


class RepositoryIndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ready: bool | None = Field(None, description="true: only the models ready to serve")


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


# --- feedback and admin bodies


class FeedbackItem(BaseModel):
    model_config = ConfigDict(json_schema_extra=_NOT_FEEDBACK)

    request_id: str = Field(min_length=1, description="the X-Request-Id of a served request")
    label: int = Field(ge=0, description="the true class")


class FeedbackBatch(BaseModel):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=10_000)


class FeedbackResult(BaseModel):
    request_id: str
    outcome: Literal["recorded", "pending", "duplicate", "conflict"]
    status: int


class FeedbackResponse(BaseModel):
    results: list[FeedbackResult]
    recorded: int


class ExperimentChange(BaseModel):
    reason: str = Field(pattern=r"\S", description="recorded with the change as an event")


class SplitChange(ExperimentChange):
    split: dict[str, Annotated[float, Field(ge=0)]] = Field(
        description="arm name -> share, one for each arm of the experiment (an experiment"
        " that names no arms: its arms are `tensorflow` and `pytorch`)"
    )


class Promotion(BaseModel):
    """`POST /admin/models/{model}/promote`: make an arm the model's default."""

    arm: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the arm's name")
    reason: str = Field("", description="recorded with the `promote` event")
    set_by: str = Field("admin API", description="who promotes")
    force: bool = Field(
        False, description="promote even while an experiment on the model runs (it is ended)"
    )


# --- operations


class HealthResponse(BaseModel):
    status: Literal["alive"]


class ReadinessResponse(BaseModel):
    ready: bool
    models: dict[str, dict[str, bool]] = Field(description="model -> framework -> ready")
