"""`dualserve replay`: the captured requests re-sent to arms through the gateway.

Each request goes as TF Serving's columnar JSON (`{"inputs": {name: tensor}}`; float32
values survive the trip exactly: JSON carries their shortest double repr) to the arm's
pinned route (`arms.ArmTarget.route`), at full speed (`concurrency` requests in flight)
or at the recorded pace (each request sent at its captured offset from the first,
divided by `speed`). Its request id is `replay-<arm>-<captured id>`: the capture never
keeps it again. The answer's tensors, status, latency (seconds, as this client saw it)
and the arm and version that answered (`X-Backend`, `X-Model-Version`) are kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.capture.arms import ArmTarget, Backends
from gateway.capture.records import INPUT, tensors_of

if TYPE_CHECKING:
    import httpx
    import pandas as pd


@dataclass
class ReplayAnswer:
    """One replayed request's answer (`outputs` None on an error: `error` says why)."""

    status: int
    latency_s: float
    outputs: dict[str, np.ndarray] | None
    arm: str | None
    version: int | None
    error: str | None = None


def request_body(row: dict[str, Any]) -> dict[str, Any]:
    """TF Serving's columnar request body of one captured row."""
    return {"inputs": {name: t.tolist() for name, t in tensors_of(row, INPUT).items()}}


def answer_outputs(body: Any) -> dict[str, np.ndarray]:
    """A columnar answer's tensors (`{"outputs": {...}}`, or one unnamed output)."""
    outputs = body["outputs"]
    if not isinstance(outputs, dict):
        outputs = {"output": outputs}
    found: dict[str, np.ndarray] = {}
    for name, value in outputs.items():
        array = np.asarray(value)
        found[name] = array.astype(np.float32) if array.dtype == np.float64 else array
    return found


async def _send(
    client: httpx.AsyncClient, model: str, row: dict[str, Any], target: ArmTarget,
    direct: Backends | None,
) -> ReplayAnswer:  # fmt: skip
    path, headers = target.route(model) if direct is None else target.direct_route(model, direct)
    headers = {**headers, "X-Request-Id": f"replay-{target.name}-{row['request_id']}"}
    started = time.perf_counter()
    try:
        reply = await client.post(path, json=request_body(row), headers=headers)
    except Exception as exc:  # a refused or reset connection is this request's answer
        return ReplayAnswer(0, time.perf_counter() - started, None, None, None, repr(exc))
    latency = time.perf_counter() - started
    arm = reply.headers.get("X-Backend") or (target.framework if direct else None)
    version = reply.headers.get("X-Model-Version")
    ver = int(version) if version and version.isdigit() else (target.version if direct else None)
    if reply.status_code != 200:
        return ReplayAnswer(reply.status_code, latency, None, arm, ver, reply.text[:200])
    return ReplayAnswer(200, latency, answer_outputs(reply.json()), arm, ver)


async def replay(
    gateway: str,
    frame: pd.DataFrame,
    target_of: Callable[[dict[str, Any]], ArmTarget],
    pace: str = "full",
    concurrency: int = 8,
    speed: float = 1.0,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    direct: Backends | None = None,
) -> list[ReplayAnswer]:
    """Every row of `frame` (a capture, `reader.read_capture`) sent to `target_of(row)`
    at `gateway` (its REST base URL); the answers in the rows' order.

    Args:
        pace: `full` (at most `concurrency` requests in flight) or `recorded` (each sent
            at its captured time offset divided by `speed`; still at most `concurrency`).
        direct: send to the backends themselves (`ArmTarget.direct_route`), not the
            gateway at `gateway`.

    Raises:
        ValueError: an unknown pace, or `concurrency`/`speed` not positive.
    """
    import httpx

    if pace not in ("full", "recorded"):
        raise ValueError(f"pace must be 'full' or 'recorded', not {pace!r}")
    if concurrency < 1 or speed <= 0:
        raise ValueError("concurrency must be >= 1 and speed > 0")
    rows = frame.to_dict("records")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    first = float(rows[0]["ts"]) if rows else 0.0
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(
        base_url=gateway, limits=limits, timeout=timeout_s, headers=headers or {}
    ) as client:
        start = loop.time()

        async def one(row: dict[str, Any]) -> ReplayAnswer:
            if pace == "recorded":
                await asyncio.sleep(max(0.0, start + (row["ts"] - first) / speed - loop.time()))
            async with gate:
                return await _send(client, str(row["model"]), row, target_of(row), direct)

        return list(await asyncio.gather(*(one(row) for row in rows)))


def replay_arms(
    gateway: str, frame: pd.DataFrame, targets: Sequence[ArmTarget], **options: Any
) -> tuple[list[ReplayAnswer], dict[str, list[ReplayAnswer]]]:
    """The captured arm replayed against itself (each row pinned to the framework and
    version that answered it: the noise floor), then each target; one arm at a time,
    so arms never compete for the backends."""

    def captured(row: dict[str, Any]) -> ArmTarget:
        version = row["version"]
        ok = version is not None and not (isinstance(version, float) and np.isnan(version))
        return ArmTarget(row["arm"], int(version) if ok else None)

    floor = asyncio.run(replay(gateway, frame, captured, **options))
    answers = {}
    for target in targets:
        answers[target.name] = asyncio.run(replay(gateway, frame, _fixed(target), **options))
    return floor, answers


def _fixed(target: ArmTarget) -> Callable[[dict[str, Any]], ArmTarget]:
    return lambda _row: target
