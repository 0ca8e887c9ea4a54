"""Gateway settings: a YAML file plus `DUALSERVE_*` environment overrides.

Nested fields use `__` in the environment, e.g. `DUALSERVE_PYTORCH__TRANSPORT=rest`.
Tests build `GatewaySettings(...)` explicitly and never depend on the environment.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.capture.settings import CaptureSettings
from gateway.core.arms import (
    Arm,
    check_names,
    check_weights,
    even_weights,
    framework_arms,
    known,
    legacy_arm_list,
    legacy_role,
)
from gateway.core.types import Framework, ServerKind
from gateway.edge.security_settings import AuthSettings, LimitsSettings

Transport = Literal["grpc", "rest"]
DecisionMetric = Literal["error_rate", "accuracy", "latency_p99_ms"]
DECISION_METRICS: tuple[DecisionMetric, ...] = ("error_rate", "accuracy", "latency_p99_ms")
_YAML_FILE: ContextVar[Path | None] = ContextVar("dualserve_yaml_file", default=None)


def _even_split() -> dict[str, float]:
    return {"tensorflow": 50.0, "pytorch": 50.0}


class UpstreamSettings(BaseModel):
    """How the gateway reaches one backend kind (all its replicas).

    Each kind defaults to the transport its clients measured faster on (see
    `TFServingSettings` and `TorchServeSettings`; `python -m benchmarks.transports`).
    An unknown field is an error naming it (`pytorch.token_fil`), as at the top level.
    """

    model_config = ConfigDict(extra="forbid")

    transport: Transport = Field("grpc", description="gRPC (binary tensors) or REST")
    grpc: list[str] = Field(default_factory=list, description="replica addresses, host:port")
    rest: list[str] = Field(default_factory=list, description="replica base URLs, http://host:port")
    timeout_s: float = Field(5.0, gt=0, description="per-call deadline")
    max_connections: int = Field(64, ge=1, description="pooled connections per replica (REST)")
    unhealthy_for_s: float = Field(2.0, ge=0, description="skip a failing replica this long")
    max_answer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="a backend's answer body at most, in bytes (REST: the call fails past it"
        " and the connection is closed; gRPC: the channel's max_receive_message_length)",
    )
    max_answer_header_bytes: int = Field(
        64 * 1024, ge=1024, description="a REST answer's status line and headers at most, in bytes"
    )
    tls_ca_file: Path | None = Field(
        None, description="PEM CA certificates for https replicas (default: the system's)"
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM client certificate sent to https replicas that ask for one"
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key of tls_cert_file (when not in that file)"
    )

    @property
    def addresses(self) -> list[str]:
        return self.grpc if self.transport == "grpc" else self.rest

    @model_validator(mode="after")
    def _a_key_needs_its_certificate(self) -> UpstreamSettings:
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_key_file is set without tls_cert_file (the client certificate)")
        return self


class TFServingSettings(UpstreamSettings):
    """TF Serving: REST by default. Through the gateway's own clients (bench_transports,
    digits-mlp, one digit per call, 16 concurrent) REST moved 1.27-1.42x the calls per
    second of gRPC at 0.63-0.70x the CPU per call over aiohttp, and 1.46x at 0.27x over
    the REST wire's own HTTP/1.1 client (issue 15; 0.40x the CPU one call at a time): TF
    Serving's JSON answer is small, grpc.aio's unary call machinery is not."""

    transport: Transport = Field("rest", description="REST (default, measured faster) or gRPC")


class TorchServeSettings(UpstreamSettings):
    """TorchServe adds its inference token (read from the key file TorchServe writes).

    REST by default since the REST wire's own HTTP/1.1 client (`upstreams/http1.py`,
    issue 15): through the gateway's clients (bench_transports, digits-mlp, one digit per
    call, 3 interleaved rounds) REST moved 1.72x the calls per second of gRPC at 0.48x the
    CPU per call at 16 concurrent calls, and as many at 0.40x the CPU one at a time;
    `DataPlane.infer` on the torch arm: 132-145 vs 230-264 us CPU per request at c=16.
    (Over aiohttp, REST had moved only 0.62-0.75x gRPC's calls per second.)"""

    transport: Transport = Field("rest", description="REST (default, measured faster) or gRPC")
    token_file: Path | None = Field(None, description="TorchServe's key_file.json")
    token: SecretStr | None = Field(None, description="the inference key, overrides token_file")
    management: list[str] = Field(
        default_factory=list,
        description="management API base URLs, one per replica (http://host:port): the"
        " catalog follows which versions each serves (`GET /models/{m}/all`, with the"
        " management key from token_file); empty = not followed, the manifest is believed",
    )


class OipSettings(UpstreamSettings):
    """Any Open Inference Protocol (KServe v2) server: Triton, KServe's model servers,
    OpenVINO Model Server, or the bundled `.pt2` server (`backends/oip/`). The gateway calls
    `ModelInfer` with raw tensor contents over gRPC, or `POST /v2/models/{m}/infer` with
    the binary tensor data extension over REST; it follows the versions each replica
    serves through the model metadata (`GET /v2/models/{m}`: `versions`) on `rest`.

    gRPC by default: tensors travel as raw bytes without a JSON header to parse (not yet
    measured against REST here)."""

    transport: Transport = Field("grpc", description="gRPC (raw tensors) or REST (binary data)")


class BreakerSettings(BaseModel):
    """A circuit breaker per backend: open after consecutive failures, probe after a pause."""

    failure_threshold: int = Field(5, ge=1, description="consecutive failures that open it")
    reset_after_s: float = Field(5.0, gt=0, description="open time before a half-open probe")
    min_timeout_s: float = Field(
        0.1,
        gt=0,
        description="a timeout counts as the backend's failure only when the attempt had at"
        " least this long; shorter ones are the client's deadline (504, not counted)",
    )


class AdmissionSettings(BaseModel):
    """Load shedding per worker process (see `gateway.edge.admission` for the sizing)."""

    max_in_flight: int = Field(
        32, ge=1, description="prediction requests in flight per worker; more get 429"
    )
    upstream_max_in_flight: int = Field(
        64, ge=1, description="calls in flight per backend kind per worker; more get 429"
    )
    retry_after_s: float = Field(1.0, gt=0, description="the Retry-After a refused client gets")


class DrainSettings(BaseModel):
    """Graceful shutdown on SIGTERM (see `gateway.edge.drain`)."""

    delay_s: float = Field(
        1.0,
        ge=0,
        description="after SIGTERM, keep serving (readiness false, `Connection: close` on"
        " every reply) this long so load balancers and keep-alive clients move away",
    )
    grace_s: float = Field(
        10.0, gt=0, description="then wait at most this long for in-flight requests"
    )
    idle_close_s: float = Field(
        0.5,
        gt=0,
        description="once the listener is closed, an open connection with no request in"
        " flight is closed after this long without a byte (a request that arrives first is"
        " answered with `Connection: close`)",
    )


class EdgeSettings(BaseModel):
    """Bounds on what a client may hold of a worker before any route runs (issue 24; see
    `gateway.processes.connections` and the gRPC ingress's `server_options`)."""

    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="request line and headers of one request, in bytes; more get 431"
        " (RFC 6585) and the connection is closed",
    )
    max_headers: int = Field(100, ge=1, description="header fields per request; more get 431")
    head_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a request's line and headers must arrive within this long of its first"
        " byte (else 408, RFC 9110 section 15.5.9), and a new connection must start one"
        " within it (else it is closed)",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        description="open REST connections per worker; past it the longest idle one is"
        " closed, and a new one when none is idle",
    )
    grpc_max_metadata_bytes: int = Field(
        16 * 1024, ge=1024, description="gRPC request metadata, in bytes (grpc.max_metadata_size)"
    )
    grpc_max_concurrent_streams: int = Field(
        100, ge=1, description="calls in flight per gRPC connection"
    )
    grpc_max_connection_idle_s: float = Field(
        300.0, gt=0, description="a gRPC connection with no call this long is closed (GOAWAY)"
    )
    grpc_keepalive_s: float = Field(
        60.0, gt=0, description="the gRPC server pings an idle connection this often"
    )


class TracingSettings(BaseModel):
    """OpenTelemetry tracing (`gateway.telemetry.tracing`). Off by default; the OpenTelemetry
    SDK's own environment switches it on as in any instrumented service
    (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set;
    `OTEL_SDK_DISABLED=true` always wins; `OTEL_TRACES_SAMPLER` picks the sampler). A field
    set here wins over its environment variable. W3C `traceparent`/`tracestate` are
    forwarded upstream whether tracing is on or not."""

    enabled: bool | None = Field(
        None,
        description="true/false force tracing on/off; None: on when an OTLP endpoint is set"
        " (here or in OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT)",
    )
    endpoint: str | None = Field(
        None,
        description="the OTLP collector, as OTEL_EXPORTER_OTLP_ENDPOINT (http/protobuf: a base"
        " URL, /v1/traces is added; grpc: host:port or a URL)",
    )
    protocol: Literal["http/protobuf", "grpc"] | None = Field(
        None, description="as OTEL_EXPORTER_OTLP_PROTOCOL (default http/protobuf)"
    )
    service_name: str | None = Field(
        None, description="as OTEL_SERVICE_NAME (default dualserve-gateway)"
    )


class ModelPolicy(BaseModel):
    """How one model's traffic is routed between its arms (`gateway.core.arms`).

    `arms` names the (framework, version) pairs; none given = the two arms `tensorflow`
    and `pytorch` following `latest` (the config of before issue 22, whose framework-keyed
    `weights` and `arm_versions` keep their meaning). `weights` and `primary` name arms.
    """

    mode: Literal["pinned", "weighted", "shadow"] = Field(
        "weighted", description="pinned: one arm; weighted: split; shadow: mirror"
    )
    arms: dict[str, Arm] = Field(
        default_factory=framework_arms,
        description="named arms {name: {framework, version}}; default: one per framework",
    )
    primary: str = Field(
        "tensorflow",
        description="the answering arm for pinned/shadow (default: `tensorflow`, else the"
        " first arm)",
    )
    weights: dict[str, float] = Field(
        default_factory=_even_split,
        description="relative traffic shares per arm for weighted mode (default: even)",
    )
    sticky: bool = Field(True, description="the same routing key always lands on the same arm")
    routing_field: str | None = Field(
        None, description="request parameter used as routing key when no X-Routing-Key header"
    )
    shadow_sample_rate: float = Field(1.0, ge=0, le=1, description="share of requests mirrored")
    failover: bool = Field(True, description="answer from the other framework when one fails")
    allow_pinning: bool = Field(
        True, description="clients may pin a framework (X-Backend) or an arm (X-Arm)"
    )
    mirror: bool = Field(
        False, description="weighted mode: also mirror shadow_sample_rate to the other framework"
    )
    arm_versions: dict[Framework, int] = Field(
        default_factory=dict,
        description="older form: version per framework arm (when `arms` is not given)",
    )

    @model_validator(mode="before")
    @classmethod
    def _named_arms(cls, data: Any) -> Any:
        """Fill what a config of before issue 22 leaves out: the two framework arms (with
        its `arm_versions`), even weights over the arms, a primary that is an arm."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "arms" not in data:
            data["arms"] = framework_arms(data.get("arm_versions"))
        arms = data["arms"]
        if not isinstance(arms, dict):
            return data  # the field's own validation names it
        if "weights" not in data:
            data["weights"] = even_weights(arms)
        if "primary" not in data and "tensorflow" not in arms and arms:
            data["primary"] = next(iter(arms))
        return data

    @model_validator(mode="after")
    def _weights_are_usable(self) -> ModelPolicy:
        if not self.arms:
            raise ValueError("arms: give at least one arm")
        check_names(self.arms, "arms")
        check_weights(self.weights, self.arms, "weights")
        if self.primary not in self.arms:
            raise ValueError(f"primary: {self.primary!r} is no arm ({known(self.arms)})")
        return self

    @property
    def arm_order(self) -> list[str]:
        """The arms in their configured order (the split's intervals follow it)."""
        return list(self.arms)


class ArmSpec(Arm):
    """One arm of an experiment given as a framework and (optionally) a version: the
    older form of a named arm (`gateway.core.arms.Arm`)."""


class StopRule(BaseModel):
    """When an experiment has enough data: a sample size per arm, a date, or both."""

    sample_size_per_arm: int | None = Field(None, ge=1, description="served requests per arm")
    end_at: datetime | None = Field(None, description="end the experiment at this time")


class Margins(BaseModel):
    """Non-inferiority margins: how much worse the candidate may be and still pass.

    A latency margin is `p99_ms`, `p99_ratio` (of the control's p99), or both (then the
    stricter, smaller one applies). Spotify's decision rule (Schultzberg et al., "Risk-aware
    product decisions in A/B tests with multiple metrics", 2024) states them up front.
    """

    accuracy_points: float = Field(
        0.5, ge=0, le=100, description="accuracy percentage points the candidate may lose"
    )
    error_rate_points: float = Field(
        1.0, ge=0, le=100, description="error-rate percentage points the candidate may add"
    )
    p99_ms: float | None = Field(None, ge=0, description="p99 milliseconds it may add")
    p99_ratio: float | None = Field(
        None, ge=0, description="share of the control's p99 it may add (0.05 = 5% slower)"
    )

    @model_validator(mode="after")
    def _a_latency_margin(self) -> Margins:
        if self.p99_ms is None and self.p99_ratio is None:
            raise ValueError("margins: give p99_ms, p99_ratio or both")
        return self


def _default_margins() -> Margins:
    return Margins(p99_ms=1.0)


class Guardrails(BaseModel):
    """When a rollout step rolls back to 0% candidate: the candidate is worse than the
    control by more than these, with the experiment's anytime-valid confidence.

    None takes the experiment's own margin for that metric.
    """

    error_rate_points: float | None = Field(None, ge=0, le=100, description="None = margins'")
    accuracy_points: float | None = Field(None, ge=0, le=100, description="None = margins'")
    p99_ms: float | None = Field(None, ge=0, description="None = margins'")
    p99_ratio: float | None = Field(None, ge=0, description="None = margins'")


class RolloutSpec(BaseModel):
    """Metric-gated rollout: the candidate's share moves up step by step (Flagger's canary
    analysis, Argo Rollouts with Kayenta), each step gated by the experiment's decision."""

    steps: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0],
        description="the candidate's traffic share per step, in percent, rising to 100",
    )
    min_units_per_step: int = Field(
        100, ge=1, description="routing keys seen in a step before it may advance"
    )
    guardrails: Guardrails = Field(default_factory=Guardrails)
    candidate: str | None = Field(
        None, description="the candidate arm rolled out (None = the experiment's first)"
    )

    @model_validator(mode="after")
    def _steps_rise_to_100(self) -> RolloutSpec:
        steps = self.steps
        if not steps or any(not 0 < s <= 100 for s in steps):
            raise ValueError("rollout.steps: each share must be in (0, 100] percent")
        if any(b <= a for a, b in pairwise(steps)):
            raise ValueError(f"rollout.steps must rise strictly, got {steps}")
        if steps[-1] != 100:
            raise ValueError(f"rollout.steps must end at 100 (the full rollout), got {steps[-1]}")
        return self


class ExperimentSpec(BaseModel):
    """An A/B/n experiment on one model: named arms (`gateway.core.arms.Arm`), a control
    and one or more candidates, split, stickiness, shadow sampling, stop rule, the error
    rate `alpha` (held across the candidates' comparisons, `stats.analysis`),
    non-inferiority margins, rollout (of one candidate at a time).

    Older forms load unchanged (issue 22): `arms: [control, candidate]` (a list, one arm
    per framework) or `control`/`candidate` given as arms; their arms are named by their
    framework, which is what their `split` keys already say.
    """

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="unique experiment id")
    model: str = Field(description="the model under test")
    arms: dict[str, Arm] = Field(
        default_factory=framework_arms,
        description="named arms {name: {framework, version}}; default: one per framework",
    )
    control: str = Field("", description="the arm in production today (default: the first)")
    candidates: list[str] = Field(
        default_factory=list, description="the arms that may replace it (default: the others)"
    )
    split: dict[str, float] = Field(
        default_factory=dict,
        description="relative traffic shares per arm (default: even, or a rollout's first step)",
    )
    sticky: bool = Field(True, description="the same routing key always lands on the same arm")
    shadow_sample_rate: float = Field(0.0, ge=0, le=1, description="share also mirrored")
    start_at: datetime | None = Field(None, description="None = when the gateway starts")
    stop: StopRule = Field(default_factory=StopRule)
    alpha: float = Field(
        0.05, gt=0, lt=0.5, description="error rate of every anytime-valid decision"
    )
    margins: Margins = Field(default_factory=_default_margins)
    decision_metrics: list[DecisionMetric] = Field(
        default_factory=lambda: list(DECISION_METRICS),
        min_length=1,
        description="metrics that must be within their margins (drop accuracy without feedback)",
    )
    rollout: RolloutSpec | None = Field(
        None,
        description="None = a fixed split; with a rollout, `split` defaults to its first step",
    )

    @model_validator(mode="before")
    @classmethod
    def _named_arms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        old_roles = "candidate" in data or isinstance(data.get("control"), (dict, BaseModel))
        if old_roles and (data.get("control") is None) != (data.get("candidate") is None):
            raise ValueError("give both control and candidate, or neither (then arms)")
        arms = data.get("arms")
        listed = isinstance(arms, list)
        if listed:
            data["arms"] = arms = legacy_arm_list(arms)
        if old_roles:
            roles: dict[str, Any] = {}
            control = legacy_role(data.get("control"), roles)
            candidate = legacy_role(data.pop("candidate"), roles)
            if listed and list(arms) != list(roles):  # type: ignore[arg-type]
                raise ValueError("arms must be [control, candidate] when both forms are given")
            data["arms"] = arms = roles
            data["control"], data["candidates"] = control, [candidate]
        if arms is not None and not isinstance(arms, dict):
            return data  # the field's own validation names it
        names = list(arms if arms is not None else framework_arms())
        data["control"] = data.get("control") or (names[0] if names else "")
        if not data.get("candidates"):
            data["candidates"] = [n for n in names if n != data["control"]]
        return data

    @model_validator(mode="after")
    def _roles_are_arms(self) -> ExperimentSpec:
        check_names(self.arms, "arms")
        if len(self.arms) < 2:
            raise ValueError("arms: an experiment has a control and at least one candidate")
        roles = [self.control, *self.candidates]
        missing = [name for name in roles if name not in self.arms]
        if missing:
            raise ValueError(f"control/candidates name {', '.join(missing)}: {known(self.arms)}")
        if len(set(roles)) != len(roles) or not self.candidates:
            raise ValueError("candidates: one or more arms, each once, none the control")
        return self

    @property
    def candidate(self) -> str:
        """The candidate a rollout moves (its `rollout.candidate`, else the first)."""
        chosen = self.rollout.candidate if self.rollout is not None else None
        return chosen or self.candidates[0]

    @property
    def roles(self) -> list[str]:
        """[control, *candidates]."""
        return [self.control, *self.candidates]

    @model_validator(mode="after")
    def _rollout_starts_at_its_first_step(self) -> ExperimentSpec:
        """With a rollout and no split given, the split is the first step's (the other
        candidates get nothing), so the candidate never gets more than that before the
        rollout controller's first look."""
        if self.rollout is not None:
            if self.rollout.candidate not in (None, *self.candidates):
                raise ValueError(f"rollout.candidate: {self.rollout.candidate!r} is no candidate")
            if "split" not in self.model_fields_set:
                first = self.rollout.steps[0]
                split = {name: 0.0 for name in self.arms}
                self.split = {**split, self.control: 100 - first, self.candidate: first}
        if not self.split:
            self.split = even_weights(self.arms)
        return self

    @model_validator(mode="after")
    def _metrics_once(self) -> ExperimentSpec:
        if len(set(self.decision_metrics)) != len(self.decision_metrics):
            raise ValueError(f"decision_metrics repeats a metric: {self.decision_metrics}")
        return self

    @model_validator(mode="after")
    def _arms_match_split(self) -> ExperimentSpec:
        if set(self.split) != set(self.arms) or sum(self.split.values()) <= 0:
            raise ValueError(
                f"split must give a non-negative share to each arm ({known(self.arms)})"
            )
        if any(share < 0 for share in self.split.values()):
            raise ValueError("split shares must be non-negative")
        return self


class ExperimentsSettings(BaseModel):
    """Experiments and the prediction log (see `gateway.experiments`)."""

    experiments: list[ExperimentSpec] | None = Field(
        None, description="None = one 50/50 sticky experiment per weighted model"
    )
    log_enabled: bool = Field(True, description="write the prediction log")
    data_dir: Path | None = Field(
        None,
        description="the SQLite log's folder; None = `data/` next to the config file, or in"
        " memory (not kept) when settings come from no file",
    )
    database_url: str | None = Field(
        None, description="postgresql://... to log to PostgreSQL; None = SQLite in data_dir"
    )
    retention_days: float | None = Field(30.0, gt=0, description="older records are deleted")
    queue_size: int = Field(10_000, ge=1, description="records waiting; full = drop and count")
    rollout_tick_s: float = Field(
        1.0, gt=0, le=60, description="seconds between two looks of the rollout controller"
    )
    batch_size: int = Field(500, ge=1, description="records per write")
    flush_interval_s: float = Field(0.2, gt=0, description="longest wait before a write")
    analysis_budget: float = Field(
        0.25,
        gt=0,
        le=1,
        description="the share of the wall time analyses may take on this host (each"
        " worker's analyst process gets budget / workers): after one of T seconds the"
        " next starts T (1 - share) / share later at the earliest (reads in between wait"
        " for it)",
    )
    analysis_parallel_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="PostgreSQL parallel workers per analysis query: 0 keeps an analysis on"
        " one core (a gateway on the database's host); more where the database has cores"
        " of its own (10M rows: 52 s with 0, 29 s with 2, measured on 2 cores)",
    )


DEFAULT_SERVERS: dict[Framework, ServerKind] = {"tensorflow": "tfserving", "pytorch": "torchserve"}


class GatewaySettings(BaseSettings):
    """Everything the gateway needs; `create_app(settings)` wires it."""

    model_config = SettingsConfigDict(
        env_prefix="DUALSERVE_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = Field("127.0.0.1", description="REST bind address")
    port: int = Field(8080, ge=0, description="REST port (0 = any free port)")
    grpc_port: int | None = Field(None, description="gRPC ingress port; None = no gRPC ingress")
    workers: int = Field(
        1,
        ge=1,
        description="gateway worker processes on this machine, all serving the REST and gRPC"
        " ports (env DUALSERVE_WORKERS); each keeps its own breakers and replica health",
    )
    replicas: int = Field(
        1,
        ge=1,
        description="gateway replicas sharing the routing state (set by the Kubernetes"
        " manifests, env DUALSERVE_REPLICAS); more than one needs a PostgreSQL database_url",
    )
    model_store: Path = Field(Path("model_store"), description="for the manifest (signatures)")
    catalog_poll_s: float = Field(
        1.0,
        ge=0,
        description="seconds between two looks at which versions each backend serves and at"
        " the manifest (gateway.control.catalog_follower); 0 = read the manifest once,"
        " follow nothing",
    )
    tensorflow: TFServingSettings = Field(default_factory=TFServingSettings)
    pytorch: TorchServeSettings = Field(default_factory=TorchServeSettings)
    oip: OipSettings = Field(default_factory=OipSettings)
    servers: dict[Framework, ServerKind] = Field(
        default_factory=dict,
        description="which server each framework's arm calls, e.g. {pytorch: oip} for the"
        " `.pt2` export on an OIP server (settings under `oip`); unnamed: TF Serving for"
        " tensorflow, TorchServe for pytorch. tfserving serves only tensorflow, torchserve"
        " only pytorch; oip either",
    )
    models: dict[str, ModelPolicy] = Field(
        default_factory=dict, description="per-model policies; others get default_policy"
    )
    default_policy: ModelPolicy = Field(default_factory=ModelPolicy)
    version_labels: dict[str, dict[str, PositiveInt]] = Field(
        default_factory=dict,
        description="TF Serving version labels, model -> label -> version (e.g. {digits-mlp:"
        " {stable: 1}}); `dualserve up` writes the same ones into TF Serving's model config."
        " None by default, as in TF Serving; an unknown label is 400 / INVALID_ARGUMENT",
    )
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1, description="larger bodies get 413")
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    cors_origins: list[str] = Field(
        default_factory=list, description="origins browsers may call from; empty = CORS off"
    )
    shadow_queue_size: int = Field(1000, ge=1, description="mirrored calls waiting; full = drop")
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    drain: DrainSettings = Field(default_factory=DrainSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    config_file: Path | None = Field(None, description="the YAML file these came from")
    experiments: ExperimentsSettings = Field(default_factory=ExperimentsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    capture: CaptureSettings = Field(
        default_factory=CaptureSettings, description="requests kept for replay (off by default)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win over the environment, which wins over the YAML file.
        yaml_file = _YAML_FILE.get()
        if yaml_file is None:
            return init_settings, env_settings
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file)

    @model_validator(mode="after")
    def _shared_state_has_a_shared_home(self) -> GatewaySettings:
        """Replicas share routing state through one PostgreSQL database (each would keep
        its own SQLite file, so their splits and experiments would drift apart); workers
        on one machine through one database file, never one in each worker's memory."""
        url = self.experiments.database_url or ""
        if self.replicas > 1 and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                f"replicas={self.replicas} needs experiments.database_url=postgresql://...:"
                " with SQLite each replica would keep its own routing state and experiments"
            )
        in_memory = not (url or self.experiments.data_dir or self.config_file)
        if self.workers > 1 and in_memory:
            raise ValueError(
                f"workers={self.workers} needs a database every worker opens: set"
                " experiments.data_dir or database_url, or load the settings from a file"
            )
        return self

    @model_validator(mode="after")
    def _servers_serve_their_framework(self) -> GatewaySettings:
        for framework, server in self.servers.items():
            if server in ("tfserving", "torchserve") and server != DEFAULT_SERVERS[framework]:
                raise ValueError(
                    f"servers.{framework}: {server} does not serve {framework} models"
                    f" (use {DEFAULT_SERVERS[framework]} or oip)"
                )
        return self

    def policy(self, model: str) -> ModelPolicy:
        return self.models.get(model, self.default_policy)

    def server_of(self, framework: Framework) -> ServerKind:
        """The server `framework`'s arm calls (`servers`, else its framework's own)."""
        return self.servers.get(framework, DEFAULT_SERVERS[framework])

    def upstream_settings(self, server: ServerKind) -> UpstreamSettings:
        """The settings block of one server kind (`tensorflow`, `pytorch` or `oip`)."""
        blocks: dict[str, UpstreamSettings] = {
            "tfserving": self.tensorflow, "torchserve": self.pytorch, "oip": self.oip,
        }  # fmt: skip
        return blocks[server]


def load_settings(path: Path | None = None, **overrides: Any) -> GatewaySettings:
    """Explicit overrides > environment (`DUALSERVE_*`) > the YAML file at `path`."""
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"gateway config {path} does not exist")
    token = _YAML_FILE.set(Path(path) if path is not None else None)
    try:
        return GatewaySettings(**overrides, config_file=path)
    finally:
        _YAML_FILE.reset(token)


def settings_document(settings: GatewaySettings) -> dict[str, Any]:
    """The YAML document of `settings`: the fields set explicitly (not the defaults, not
    the environment: build with `GatewaySettings.model_validate` to leave it out), without
    `config_file` (that is where the document goes)."""
    return settings.model_dump(mode="json", exclude_unset=True, exclude={"config_file"})


def write_settings(settings: GatewaySettings, path: Path) -> None:
    """Write `settings_document(settings)` as the YAML that `load_settings(path)` reads."""
    Path(path).write_text(yaml.safe_dump(settings_document(settings), sort_keys=False))
