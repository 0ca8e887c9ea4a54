"""The transport-free serving core: resolve, validate, (batch), run, measure.

REST routes and gRPC servicers decode their wire format into a `ModelSpec` plus a
decoder, call `ServingCore.predict`, and encode the `PredictResult`. Nothing here knows
about HTTP, JSON, protobuf or grpc.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from backends.tfserving.server.batching import BatchScheduler
from backends.tfserving.server.errors import ServingError
from backends.tfserving.server.manager import LoadedVersion, ModelManager
from backends.tfserving.server.metrics import ServerMetrics
from backends.tfserving.server.signature import (
    ModelSpec,
    SignatureInfo,
    check_output_filter,
    select_signature,
    validate_inputs,
)

Decoder = Callable[[SignatureInfo], dict[str, np.ndarray]]


@dataclass(frozen=True)
class PredictResult:
    """What Predict answers: the version that ran, the signature, the chosen outputs."""

    model: str
    version: int
    signature_name: str
    outputs: dict[str, np.ndarray]


class ServingCore:
    """Predict and status for both transports; TF runs in thread pools, never on the loop."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: ServerMetrics,
        batcher: BatchScheduler | None = None,
        threads: int = 4,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.batcher = batcher
        self._executor = ThreadPoolExecutor(threads, "tfs-predict")

    async def predict(
        self, spec: ModelSpec, decode: Decoder, output_filter: Sequence[str], entrypoint: str
    ) -> PredictResult:
        """Run one Predict call; records request count and latency whatever the outcome."""
        started = time.perf_counter()
        status = "OK"
        try:
            return await self._predict(spec, decode, output_filter)
        except ServingError as exc:
            status = exc.grpc_code
            raise
        finally:
            self.metrics.request_count.inc(spec.name, status)
            micros = (time.perf_counter() - started) * 1e6
            self.metrics.request_latency.labels(spec.name, "predict", entrypoint).observe(micros)

    async def _predict(
        self, spec: ModelSpec, decode: Decoder, output_filter: Sequence[str]
    ) -> PredictResult:
        servable = self.manager.resolve(spec)
        sig = select_signature(servable.signatures, spec.signature_name)
        inputs = decode(sig)
        size = validate_inputs(sig, inputs)
        outputs = check_output_filter(sig, output_filter)

        def run(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return self._timed_run(servable, sig.name, batch, outputs)

        if self.batcher is None:
            loop = asyncio.get_running_loop()
            values = await loop.run_in_executor(self._executor, run, inputs)
        else:
            key = (servable.name, servable.version, sig.name, tuple(sorted(inputs)), outputs)
            values = await self.batcher.submit(key, servable.name, run, inputs, size)
        return PredictResult(servable.name, servable.version, sig.name, values)

    def _timed_run(
        self,
        servable: LoadedVersion,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        outputs: tuple[str, ...],
    ) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        try:
            return servable.run(signature, inputs, outputs)
        finally:
            micros = (time.perf_counter() - started) * 1e6
            self.metrics.runtime_latency.labels(servable.name, "Predict", "TF2").observe(micros)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.batcher is not None:
            self.batcher.close()
