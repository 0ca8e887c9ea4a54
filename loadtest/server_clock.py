"""Where the time went on the server: each backend's own queue and compute time per request,
read from its Prometheus metrics before and after a cell.

- TF Serving: `:tensorflow:serving:request_latency` (the whole Predict call, per request),
  `:tensorflow:serving:batching_session:queuing_latency` (time in the batching queue, per
  request; absent or empty without batching) and `:tensorflow:serving:runtime_latency`
  (the TensorFlow run, per run: with batching one run serves a batch), all microseconds,
  histograms (`_sum`, `_count`) labelled with `model_name` (TF Serving's
  `servables/tensorflow/util.cc` and `batching/batching_session.cc`).
- TorchServe: the counters `ts_inference_requests_total`, `ts_inference_latency_microseconds`
  (from the frontend's receipt of the request to the answer, the queue included) and
  `ts_queue_latency_microseconds` (waiting for a worker), labelled `model_name`
  (TorchServe's `docs/metrics.md`, prometheus mode). Compute is their difference: the
  worker's handler and the frontend-backend hand-off. TorchServe 0.12 fills these for its
  REST frontend only, so direct gRPC calls to it show n/a.

A cell's figures are the deltas over the cell: every request the backend counted in that
time, warm-up included (the backend cannot tell it apart), so they are means over slightly
more requests than the client measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

TF_REQUEST = ":tensorflow:serving:request_latency"
TF_QUEUE = ":tensorflow:serving:batching_session:queuing_latency"
TF_RUN = ":tensorflow:serving:runtime_latency"
TS_REQUESTS = "ts_inference_requests_total"
TS_LATENCY = "ts_inference_latency_microseconds"
TS_QUEUE = "ts_queue_latency_microseconds"


@dataclass(frozen=True)
class Clock:
    """Cumulative figures of one backend for one model: (sum in us, count) pairs."""

    request: tuple[float, float]
    queue: tuple[float, float]
    compute: tuple[float, float]


@dataclass(frozen=True)
class ServerTimes:
    """A backend's own mean times per request over a cell, ms; nan where unknown."""

    server_ms: float
    queue_ms: float
    compute_ms: float


UNKNOWN = ServerTimes(math.nan, math.nan, math.nan)


def _samples(text: str, model: str) -> dict[str, float]:
    """Sum of every sample per sample name, for the series of `model`."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model_name", model) == model:
                found[s.name] = found.get(s.name, 0.0) + float(s.value)
    return found


def tfserving_clock(text: str, model: str) -> Clock:
    """TF Serving's cumulative request, queue and run time of `model` (a metrics page)."""
    s = _samples(text, model)

    def pair(name: str) -> tuple[float, float]:
        return s.get(f"{name}_sum", 0.0), s.get(f"{name}_count", 0.0)

    return Clock(pair(TF_REQUEST), pair(TF_QUEUE), pair(TF_RUN))


def torchserve_clock(text: str, model: str) -> Clock:
    """TorchServe's cumulative inference, queue and (their difference) compute time."""
    s = _samples(text, model)

    def counter(name: str) -> float:  # the parser names a counter's sample `<name>_total`
        return s.get(name, s.get(f"{name}_total", 0.0))

    count = counter(TS_REQUESTS)
    total, queue = counter(TS_LATENCY), counter(TS_QUEUE)
    return Clock((total, count), (queue, count), (total - queue, count))


def metrics_page(url: str, framework: str) -> str:
    """The page to scrape: TF Serving's metrics URL is the page itself (its monitoring
    config's path); TorchServe's is its metrics API's base address, the page `/metrics`."""
    return url.rstrip("/") + "/metrics" if framework == "pytorch" else url


def read_clock(url: str | None, framework: str, model: str) -> Clock | None:
    """Scrape one backend's metrics page; None when it cannot be read (2 s bound)."""
    if not url or framework not in ("tensorflow", "pytorch"):
        return None
    try:
        text = httpx.get(metrics_page(url, framework), timeout=2.0).text
        parse = tfserving_clock if framework == "tensorflow" else torchserve_clock
        return parse(text, model)
    except (httpx.HTTPError, ValueError):
        return None


def _mean_ms(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Mean ms per observation between two scrapes; nan when nothing was observed, or when
    the time did not grow (TorchServe counts its gRPC requests but adds no latency)."""
    count, total = after[1] - before[1], after[0] - before[0]
    return total / count / 1000 if count > 0 and total > 0 else math.nan


def times(before: Clock | None, after: Clock | None) -> ServerTimes:
    """Mean request, queue and compute time (ms) between two scrapes. A batching queue
    that saw no request (batching off) counts as 0 ms when requests were served."""
    if before is None or after is None:
        return UNKNOWN
    server = _mean_ms(before.request, after.request)
    queue = _mean_ms(before.queue, after.queue)
    if math.isnan(queue) and not math.isnan(server):
        queue = 0.0
    return ServerTimes(server, queue, _mean_ms(before.compute, after.compute))


def parse_server_timing(value: str) -> dict[str, float]:
    """`gateway;dur=0.412, upstream;dur=2.930` -> {"gateway": 0.412, "upstream": 2.93} (ms;
    W3C Server Timing, `server-timing-param` `dur`); entries without a number are left out."""
    found: dict[str, float] = {}
    for entry in value.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, number = param.partition("=")
            if key.strip() == "dur" and name:
                try:
                    found[name] = float(number)
                except ValueError:
                    continue
    return found
