"""The capture as the composition root wires it: `build_capture(settings, ...)`."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gateway.capture.cloudevents import CloudEventsSink
from gateway.capture.files import CaptureFiles
from gateway.capture.settings import capture_dir
from gateway.capture.sink import CaptureSink

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings
    from gateway.telemetry.metrics import GatewayMetrics


def build_capture(
    settings: GatewaySettings, models: Iterable[str], metrics: GatewayMetrics
) -> CaptureSink | None:
    """The capture sink when a model has a share, else None (capture is off).

    Raises:
        ValueError: a captured model the catalog does not know, pyarrow missing, or no
            folder to write to (no `capture.dir` and no config file).
    """
    capture = settings.capture
    if not capture.enabled:
        return None
    unknown = sorted(set(capture.models) - set(models))
    if unknown:
        raise ValueError(f"capture.models names unknown models: {', '.join(unknown)}")
    if importlib.util.find_spec("pyarrow") is None:
        raise ValueError(
            "capture needs pyarrow (the gateway extra: pip install 'dualserve[gateway]')"
        )
    root = capture_dir(capture, settings.config_file)
    if root is None:
        raise ValueError("capture needs a folder: set capture.dir or load the settings from a file")

    def files() -> CaptureFiles:
        return CaptureFiles(
            root, capture.max_file_bytes, capture.max_file_age_s,
            capture.retention_hours * 3600.0, capture.max_total_bytes,
        )  # fmt: skip

    events = None
    if capture.cloudevents_url:
        url = capture.cloudevents_url

        def events() -> CloudEventsSink:
            return CloudEventsSink(url, capture.cloudevents_source, capture.cloudevents_timeout_s)

    sink = CaptureSink(
        files, capture.models, capture.queue_size, capture.max_request_bytes,
        capture.flush_interval_s, events, capture.queue_max_bytes,
    )  # fmt: skip
    metrics.before_render(sink.metrics_updater(metrics.registry))
    return sink
