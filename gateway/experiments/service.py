"""The experiments room as one object: experiments, the prediction log, feedback, analysis.

`create_app` builds one `ExperimentService`; the lifespan calls `start()` and `aclose()`.
The data plane only calls `submit()` (never waits) and reads `active`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog
from gateway.errors import GatewayError
from gateway.experiments.analysis import analyse
from gateway.experiments.log import PredictionLog
from gateway.experiments.manager import ExperimentManager
from gateway.experiments.records import FeedbackResult, Outcome
from gateway.experiments.shadow import Comparison
from gateway.experiments.store import LogStore, open_store
from gateway.routing.router import Router
from gateway.settings import ArmSpec, ExperimentSpec, ExperimentsSettings
from gateway.types import FRAMEWORKS, Framework, InferRequest, InferResponse

_TICK_S = 1.0
_PURGE_EVERY_S = 3600.0


class LogUnavailable(GatewayError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


def default_specs(catalog: Catalog, router: Router) -> list[ExperimentSpec]:
    """One sticky experiment per weighted model with both builds, on its configured split."""
    specs = []
    for model in catalog.names:
        policy, info = router.policies[model], catalog.get(model)
        if policy.mode != "weighted" or set(info.versions[info.latest]) != set(FRAMEWORKS):
            continue
        arms = [ArmSpec(framework=fw, version=info.latest) for fw in FRAMEWORKS]
        split = {fw: policy.weights.get(fw, 0.0) for fw in FRAMEWORKS}
        specs.append(ExperimentSpec(id=f"{model}-ab", model=model, arms=arms, split=split))
    return specs


def data_dir(settings: ExperimentsSettings, config_file: Path | None) -> Path | None:
    """The configured folder, else `data/` beside the config file, else None (in memory)."""
    if settings.data_dir is not None:
        return settings.data_dir
    return None if config_file is None else Path(config_file).resolve().parent / "data"


def check_specs(specs: Sequence[ExperimentSpec], catalog: Catalog) -> None:
    """Fail fast at start on unknown models, versions or duplicate ids."""
    if len({spec.id for spec in specs}) != len(specs):
        raise ValueError("experiment ids must be unique")
    for spec in specs:
        info = catalog.get(spec.model)  # NotFound names the model
        for arm in spec.arms:
            if arm.version is not None and arm.framework not in info.versions.get(arm.version, ()):
                message = f"no {arm.framework} build of version {arm.version}"
                raise ValueError(f"experiment {spec.id}: {message}")


class ExperimentService:
    def __init__(
        self,
        settings: ExperimentsSettings,
        catalog: Catalog,
        router: Router,
        config_file: Path | None = None,
    ) -> None:
        specs = settings.experiments
        specs = default_specs(catalog, router) if specs is None else specs
        check_specs(specs, catalog)
        base = dict(router.policies)
        self.manager = ExperimentManager(specs, base.__getitem__, router.set_policy)
        self.active = self.manager.active  # model -> running experiment id (read per request)
        self.settings = settings
        self.log: PredictionLog | None = None
        if settings.log_enabled:
            self.log = PredictionLog(
                lambda: open_store(settings.database_url, data_dir(settings, config_file)),
                settings.queue_size, settings.batch_size, settings.flush_interval_s,
                on_written=self.manager.observe,
            )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    def submit(self, outcome: Outcome) -> None:
        if self.log is not None:
            self.log.submit(outcome)

    def observe_shadow(
        self,
        arm: Framework,
        request: InferRequest,
        shadow: InferResponse | GatewayError,
        seconds: float,
        result: Comparison | None,
    ) -> None:
        """The shadow mirror's observer: one `kind="shadow"` record per mirrored call."""
        if isinstance(shadow, GatewayError):
            version, status, outputs = None, int(shadow.status), None
        else:
            version, status, outputs = shadow.version, 200, shadow.outputs
        self.submit(
            Outcome(
                request.request_id, self.active.get(request.model), request.model, arm,
                version, request.routing_key, seconds, status, outputs,
                kind="shadow", agreed=None if result is None else result.agreed,
            )
        )  # fmt: skip

    async def start(self) -> None:
        if self.log is None:
            self.manager.restore([])
            self.manager.pending.clear()
            return
        await self.log.start()
        self.manager.load_counts(await self.log.run(_counts))
        self.manager.restore(await self.log.run(_events))
        await self._persist()
        self._task = asyncio.create_task(self._housekeeping(), name="experiments-housekeeping")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.log is not None:
            await self.log.flush()
            await self._persist()
            await self.log.aclose()

    async def transition(self, experiment: str, action: str, reason: str) -> dict[str, Any]:
        event = self.manager.transition(experiment, action, reason)
        await self._persist()
        return {"experiment": self.manager.get(experiment).as_dict(), "event": event.as_dict()}

    async def change_split(
        self, experiment: str, split: dict[Framework, float], reason: str
    ) -> dict[str, Any]:
        event = self.manager.change_split(experiment, split, reason)
        await self._persist()
        return {"experiment": self.manager.get(experiment).as_dict(), "event": event.as_dict()}

    async def feedback(self, items: Sequence[tuple[str, int]]) -> list[FeedbackResult]:
        log = self._require_log()
        await log.flush()  # the request may still be queued: write it before joining
        return await log.run(_add_feedback, items, time.time())

    async def analysis(self, experiment: str) -> dict[str, Any]:
        self.manager.get(experiment)  # 404 for unknown ids
        log = self._require_log()
        await log.flush()
        await self._persist()  # e.g. a stop rule the flush just triggered
        rows = await log.run(_records, experiment)
        events = await log.run(_events, experiment)
        # Bootstrap intervals take CPU: compute them off the event loop.
        result = await asyncio.to_thread(analyse, rows, events, experiment)
        result["status"] = self.manager.get(experiment).status
        return result

    async def summaries(self) -> list[dict[str, Any]]:
        """Every experiment with live per-arm figures (accuracy once feedback exists)."""
        live = await self.log.run(_summary) if self.log is not None else {}
        return [
            {**state.as_dict(), "arms": live.get(exp_id, {})}
            for exp_id, state in sorted(self.manager.states.items())
        ]

    def log_counters(self) -> dict[str, Any]:
        if self.log is None:
            return {"enabled": False}
        counters = self.log.counters
        return {"enabled": True, "queued": self.log.queued, **counters.__dict__}

    def _require_log(self) -> PredictionLog:
        if self.log is None:
            raise LogUnavailable("the prediction log is disabled (experiments.log_enabled)")
        return self.log

    async def _persist(self) -> None:
        events, self.manager.pending = self.manager.pending, []
        if self.log is not None:
            for event in events:
                await self.log.run(_add_event, event)

    async def _housekeeping(self) -> None:
        last_purge = 0.0
        while True:
            now = time.time()
            self.manager.tick(now)
            await self._persist()
            retention = self.settings.retention_days
            if retention is not None and now - last_purge >= _PURGE_EVERY_S and self.log:
                await self.log.run(_purge, now - retention * 86400)
                last_purge = now
            await asyncio.sleep(_TICK_S)


# Store calls, run on the log's storage thread.
def _counts(store: LogStore) -> dict[tuple[str, str], int]:
    return store.arm_counts()


def _events(store: LogStore, experiment: str | None = None) -> Any:
    return store.events(experiment)


def _records(store: LogStore, experiment: str) -> Any:
    return store.records(experiment)


def _add_event(store: LogStore, event: Any) -> None:
    store.add_event(event)


def _add_feedback(store: LogStore, items: Sequence[tuple[str, int]], ts: float) -> Any:
    return store.add_feedback(items, ts)


def _purge(store: LogStore, before: float) -> int:
    return store.purge(before)


def _summary(store: LogStore) -> Any:
    return store.summary()
