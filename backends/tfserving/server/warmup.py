"""Replay a version's warm-up requests before it takes traffic, as TF Serving does.

`assets.extra/tf_serving_warmup_requests` is a TFRecord of `PredictionLog`s; each
`predict_log.request` is run once through the new servable, so its first real request
does not pay for graph tracing, kernel selection or memory allocation.
"""

from __future__ import annotations

import time
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from backends.tfserving.server.errors import ServingError
from backends.tfserving.server.grpc_codec import request_inputs
from backends.tfserving.server.servable import Servable
from backends.tfserving.server.signature import check_output_filter, select_signature, validate_inputs

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving's cap on warm-up records per version


def warmup_file(servable: Servable) -> Path:
    return servable.path / WARMUP_FILE


def run_warmup(servable: Servable) -> tuple[int, float]:
    """Replay every predict record; returns (records replayed, seconds). Errors propagate."""
    path = warmup_file(servable)
    if not path.is_file():
        return 0, 0.0
    started = time.perf_counter()
    count = 0
    for raw in tf.data.TFRecordDataset(str(path)).take(MAX_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ServingError(f"{path}: only predict_log warm-up records are supported")
        _replay(servable, log.predict_log.request)
        count += 1
    return count, time.perf_counter() - started


def _replay(servable: Servable, request: predict_pb2.PredictRequest) -> None:
    sig = select_signature(servable.signatures, request.model_spec.signature_name)
    inputs = request_inputs(request)
    validate_inputs(sig, inputs)
    outputs = check_output_filter(sig, list(request.output_filter))
    servable.run(sig.name, inputs, outputs)
