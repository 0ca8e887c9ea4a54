"""What an inference request means, whatever protocol carried it: checks, runs, bounds.

REST and gRPC decode their wire into named numpy arrays, call `OipCore.infer`, and encode
what it returns; checks and errors are written once here. The checks are those Triton makes
before it runs a model: every input the model declares and no other, each of its declared
datatype and shape (the batch dimension, -1, free within 1..`max_batch_size`), each asked
output one the model has.

Runs go to a pool of `threads` runners (torch releases the GIL in its kernels); at most
`max_waiting` requests wait for one, past that a request is refused at once with 503 (as
Triton does when its queue is full), counted in `oip_requests_shed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from backends.oip.errors import InvalidInput, OipError, Unavailable
from backends.oip.metrics import OipMetrics
from backends.oip.repository import ModelRepository, ServedVersion, TensorMeta
from gateway.codecs.oip_raw import DATATYPES

log = logging.getLogger("oip.core")


@dataclass
class OipCore:
    """The transport-free server.

    Args:
        repository: the served versions.
        metrics: where requests are counted.
        threads: runners (each a torch call at a time).
        max_batch_size: the largest batch one request may carry.
        max_waiting: requests waiting for a runner at most; more are refused with 503.
    """

    repository: ModelRepository
    metrics: OipMetrics = field(default_factory=OipMetrics)
    threads: int = 1
    max_batch_size: int = 4096
    max_waiting: int = 64
    _waiting: int = 0
    _pool: ThreadPoolExecutor | None = None

    async def infer(
        self,
        model: str,
        version: int | None,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] = (),
    ) -> tuple[ServedVersion, dict[str, np.ndarray]]:
        """Run one request; returns the version that ran and the outputs asked for (all
        when `outputs` is empty), in the model's output order.

        Raises:
            InvalidInput: an input or output does not fit the model's signature.
            NotFound: unknown model or version.
            Unavailable: the version failed to load, or `max_waiting` requests wait.
        """
        try:
            served = self.repository.get(model, version)
            batch = check_inputs(served, inputs, self.max_batch_size)
            wanted = check_outputs(served, outputs)
            return served, await self._run(served, dict(inputs), wanted, batch)
        except OipError as exc:
            self.metrics.failed(model, version, type(exc).__name__)
            raise

    async def _run(
        self, served: ServedVersion, inputs: dict[str, np.ndarray], wanted: list[str], batch: int
    ) -> dict[str, np.ndarray]:
        if self._waiting >= self.max_waiting:
            self.metrics.shed.inc()
            raise Unavailable(
                f"server busy: {self._waiting} requests wait for a runner (max_waiting)"
            )
        started = time.perf_counter()
        self._waiting += 1
        self.metrics.waiting.inc()
        try:
            loop = asyncio.get_running_loop()
            queued: list[float] = []
            result = await loop.run_in_executor(self.pool(), _timed, served, inputs, queued)
        finally:
            self._waiting -= 1
            self.metrics.waiting.dec()
        total = time.perf_counter() - started
        self.metrics.answered(served.name, served.version, batch, queued[0] - started, total)
        return {name: result[name] for name in wanted}

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="oip-runner")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _timed(
    served: ServedVersion, inputs: dict[str, np.ndarray], queued: list[float]
) -> dict[str, np.ndarray]:
    queued.append(time.perf_counter())  # the moment a runner took it
    try:
        return served.run(inputs)
    except (RuntimeError, ValueError) as exc:  # torch's own errors: a sentence, no trace
        log.exception("model %s version %d failed", served.name, served.version)
        raise OipError(
            f"model '{served.name}' version {served.version} failed to run"
            f" ({type(exc).__name__}; the detail is in the server's log)"
        ) from exc


def check_inputs(served: ServedVersion, inputs: Mapping[str, np.ndarray], max_batch: int) -> int:
    """The request's batch size, after every input was checked against the signature.

    Raises:
        InvalidInput: naming the input and what the model expects.
    """
    expected = {meta.name: meta for meta in served.inputs}
    if set(inputs) != set(expected):
        raise InvalidInput(
            f"model '{served.name}' expects inputs {sorted(expected)}, got {sorted(inputs)}"
        )
    batches = {_check_tensor(meta, inputs[name]) for name, meta in expected.items()}
    if len(batches) > 1:
        raise InvalidInput(f"inputs of model '{served.name}' disagree on the batch size")
    batch = batches.pop()
    if not 1 <= batch <= max_batch:
        raise InvalidInput(f"batch size {batch} is outside 1..{max_batch} (max_batch_size)")
    return batch


def _check_tensor(meta: TensorMeta, value: np.ndarray) -> int:
    dtype = DATATYPES.get(meta.datatype)
    if value.dtype != dtype:
        got = next((k for k, v in DATATYPES.items() if v == value.dtype), str(value.dtype))
        raise InvalidInput(
            f"input '{meta.name}': datatype {got}, the model expects {meta.datatype}"
        )
    fits = len(value.shape) == len(meta.shape) and all(
        want in (-1, got) for want, got in zip(meta.shape, value.shape, strict=True)
    )
    if not fits:
        raise InvalidInput(
            f"input '{meta.name}': shape {list(value.shape)}, the model expects {list(meta.shape)}"
        )
    return int(value.shape[0])


def check_outputs(served: ServedVersion, outputs: Sequence[str]) -> list[str]:
    """The outputs to return, in the model's order (all when none was asked)."""
    names = [meta.name for meta in served.outputs]
    unknown = sorted(set(outputs) - set(names))
    if unknown:
        raise InvalidInput(f"model '{served.name}' has no output {unknown[0]!r} (has {names})")
    return [n for n in names if not outputs or n in outputs]
