"""The capture's optional CloudEvents HTTP sink (`capture.cloudevents_url`), for Knative
and Kafka users: each captured request is POSTed as one CloudEvent in binary content
mode, as KServe's payload logger sends its events (CloudEvents 1.0 HTTP protocol binding,
https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md:
the attributes in `ce-*` headers, the data as the body).

- `ce-specversion: 1.0`, `ce-id`: the request id, `ce-source`: `capture.cloudevents_source`,
  `ce-type`: `org.dualserve.capture.v1`, `ce-time` (RFC 3339), `ce-subject`: the model;
  the extensions `ce-arm`, `ce-modelversion`.
- The body (`application/json`): `model`, `arm`, `version`, `latency_ms`, `status`,
  `error`, `failover`, `key_hash`, and `inputs`/`outputs` as Open Inference Protocol
  tensors (`name`, `shape`, `datatype`, `data` flattened).

Sent from the capture's writer thread, after the batch's files are written: a slow or
failing endpoint delays the writer (then the bounded queue drops and counts), never a
request. A failed POST is counted (`cloudevents_failed`), not retried.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from gateway.capture.records import CaptureRecord
from gateway.experiments.log.records import key_hash

EVENT_TYPE = "org.dualserve.capture.v1"
_DATATYPES = {
    "float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32",
    "int16": "INT16", "int8": "INT8", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
    "uint64": "UINT64", "bool": "BOOL",
}  # fmt: skip


def oip_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """One tensor as the Open Inference Protocol's JSON writes it (bytes as text)."""
    array = np.asarray(array)
    datatype = _DATATYPES.get(array.dtype.name, "BYTES")
    flat = array.reshape(-1)
    data = (
        [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
        if datatype == "BYTES"
        else flat.tolist()
    )
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def event_of(record: CaptureRecord, source: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The binary-mode headers and JSON body of one captured request."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": record.request_id,
        "ce-source": source,
        "ce-type": EVENT_TYPE,
        "ce-time": datetime.fromtimestamp(record.ts, UTC).isoformat().replace("+00:00", "Z"),
        "ce-subject": record.model,
        "ce-arm": record.arm,
        "ce-modelversion": "" if record.version is None else str(record.version),
        "content-type": "application/json",
    }
    body = {
        "model": record.model, "arm": record.arm, "version": record.version,
        "latency_ms": round(record.latency_s * 1000, 4), "status": record.status,
        "error": record.error, "failover": record.failover,
        "key_hash": key_hash(record.routing_key),
        "inputs": [oip_tensor(n, a) for n, a in record.inputs.items()],
        "outputs": [oip_tensor(n, a) for n, a in (record.outputs or {}).items()],
    }  # fmt: skip
    return headers, body


class CloudEventsSink:
    """POSTs each record to `url` over one keep-alive connection (the writer thread's).

    Args:
        url: the endpoint (a Knative broker, a Kafka bridge, KServe's logger target).
        source: `ce-source`.
        timeout_s: per POST.
    """

    def __init__(self, url: str, source: str, timeout_s: float) -> None:
        import httpx

        self._url, self._source = url, source
        self._client = httpx.Client(timeout=timeout_s)
        self.sent = 0
        self.failed = 0

    def send(self, records: list[CaptureRecord]) -> None:
        """POST every record; a refused, failed or non-2xx POST is counted in `failed`."""
        for record in records:
            headers, body = event_of(record, self._source)
            try:
                reply = self._client.post(self._url, json=body, headers=headers)
                ok = 200 <= reply.status_code < 300
            except Exception:
                ok = False
            if ok:
                self.sent += 1
            else:
                self.failed += 1

    def close(self) -> None:
        self._client.close()
