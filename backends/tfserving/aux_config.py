"""TF Serving's batching parameters and monitoring config files (text protobuf).

`tensorflow-serving-api` does not ship `BatchingParameters` (session_bundle_config.proto)
nor `MonitoringConfig` (monitoring_config.proto), so the two messages are declared here
with the same field names and wrapper types, in a private descriptor pool; the real
`google.protobuf.text_format` then reads and writes exactly what the real binary does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from backends.tfserving.model_config import ConfigError

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
_INT_FIELDS = (
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "max_execution_batch_size",
)
_BOOL_FIELDS = ("enable_large_batch_splitting",)
_F = descriptor_pb2.FieldDescriptorProto
_BATCHING_FIELDS = (  # (name, wrapper type or None for a repeated int64), TF Serving's order
    ("max_batch_size", "Int64Value"),
    ("batch_timeout_micros", "Int64Value"),
    ("max_enqueued_batches", "Int64Value"),
    ("num_batch_threads", "Int64Value"),
    ("thread_pool_name", "StringValue"),
    ("allowed_batch_sizes", None),
    ("pad_variable_length_inputs", "BoolValue"),
    ("enable_large_batch_splitting", "BoolValue"),
    ("max_execution_batch_size", "Int64Value"),
)


@dataclass(frozen=True)
class BatchingParameters:
    """Server-side batching knobs; defaults are TF Serving's."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4
    enable_large_batch_splitting: bool = False
    """When true, requests up to max_batch_size are split into execution batches of at
    most max_execution_batch_size (TF Serving's semantics)."""
    max_execution_batch_size: int = 0
    """Largest batch run at once when splitting; 0 means max_batch_size."""

    @property
    def execution_limit(self) -> int:
        """The most examples one merged batch runs with."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size > 0:
            return min(self.max_execution_batch_size, self.max_batch_size)
        return self.max_batch_size


@dataclass(frozen=True)
class MonitoringConfig:
    """Whether and where the Prometheus page is served (on the REST port)."""

    enable: bool = False
    path: str = DEFAULT_METRICS_PATH


@cache
def _messages() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    pool.Add(_file_proto())
    names = ("BatchingParameters", "MonitoringConfig")
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"dualserve.tfs.{n}"))
        for n in names
    }


def _file_proto() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="dualserve_tfs_aux.proto",
        package="dualserve.tfs",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    _add_batching(file.message_type.add(name="BatchingParameters"))
    _add_monitoring(file)
    return file


def _add_batching(message: descriptor_pb2.DescriptorProto) -> None:
    for number, (name, wrapper) in enumerate(_BATCHING_FIELDS, start=1):
        if wrapper is None:
            message.field.add(name=name, number=number, type=_F.TYPE_INT64, label=_F.LABEL_REPEATED)
            continue
        message.field.add(
            name=name,
            number=number,
            type=_F.TYPE_MESSAGE,
            label=_F.LABEL_OPTIONAL,
            type_name=f".google.protobuf.{wrapper}",
        )


def _add_monitoring(file: descriptor_pb2.FileDescriptorProto) -> None:
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_OPTIONAL,
        type_name=".dualserve.tfs.PrometheusConfig",
    )


def _parse(kind: str, text: str, source: str) -> Any:
    message = _messages()[kind]()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return message


def parse_batching_parameters(text: str, source: str = "batching parameters") -> BatchingParameters:
    """Read a `BatchingParameters` text proto; unset fields keep TF Serving's defaults."""
    proto = _parse("BatchingParameters", text, source)
    defaults = BatchingParameters()
    values = {
        name: getattr(proto, name).value if proto.HasField(name) else getattr(defaults, name)
        for name in (*_INT_FIELDS, *_BOOL_FIELDS)
    }
    params = BatchingParameters(**values)
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(params, name) <= 0:
            raise ConfigError(f"{source}: {name} must be positive, got {getattr(params, name)}")
    return params


def render_batching_parameters(params: BatchingParameters) -> str:
    proto = _messages()["BatchingParameters"]()
    for name in _INT_FIELDS:
        if name != "max_execution_batch_size" or params.max_execution_batch_size > 0:
            getattr(proto, name).value = getattr(params, name)
    if params.enable_large_batch_splitting:
        proto.enable_large_batch_splitting.value = True
    return text_format.MessageToString(proto)


def parse_monitoring_config(text: str, source: str = "monitoring config") -> MonitoringConfig:
    proto = _parse("MonitoringConfig", text, source)
    prom = proto.prometheus_config
    return MonitoringConfig(enable=prom.enable, path=prom.path or DEFAULT_METRICS_PATH)


def render_monitoring_config(config: MonitoringConfig) -> str:
    proto = _messages()["MonitoringConfig"]()
    proto.prometheus_config.enable = config.enable
    proto.prometheus_config.path = config.path
    return text_format.MessageToString(proto)


def read_text(path: str | Path, what: str) -> str:
    """A config file's text, or a ConfigError naming the flag's file."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
