"""The experiments room as one object: experiments, the prediction log, feedback, analysis.

`build_context` builds one `ExperimentService` and subscribes `observe` to the router's
outcomes; the lifespan calls `start()` and `aclose()` (after the control plane started).
Experiments' state is read through the manager's snapshot (the database is its home);
live per-arm figures come from the prediction log, so they cover every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog
from gateway.control.database import StoreUnavailable
from gateway.control.plane import ControlPlane
from gateway.core.errors import BadRequest, GatewayError, NotFound
from gateway.core.outcome import CallOutcome
from gateway.experiments import promote as promotion
from gateway.experiments import state_store
from gateway.experiments.analyst import AnalysisUnavailable, Analyst
from gateway.experiments.controller import RolloutController
from gateway.experiments.log.labels import LabelOutOfRange, check_label_range, class_counts
from gateway.experiments.log.process import WriterProcess
from gateway.experiments.log.records import Event, FeedbackResult, prediction_record
from gateway.experiments.log.sink import CALL_TIMEOUT_S, PredictionLog
from gateway.experiments.log.store import LogStore, Watermark, open_store
from gateway.experiments.manager import Conflict, ExperimentManager, PolicyLayers
from gateway.experiments.specs import check_specs, data_dir, default_specs
from gateway.experiments.stats.analysis import analyse_store
from gateway.settings import ExperimentSpec, ExperimentsSettings
from gateway.telemetry.metrics import LogHealthMetrics

logger = logging.getLogger(__name__)
_TICK_S = 1.0
_PURGE_EVERY_S = 3600.0
_ANALYSIS_TIMEOUT_S = 60.0  # an analysis of a log in memory (else: the analyst's)


class LogUnavailable(GatewayError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


class ExperimentService:
    """Experiments, their prediction log and feedback, as one object.

    Args:
        settings: the `experiments` section.
        catalog: the models (for the default experiments and checks).
        control: the control plane (experiments' state and events).
        layers: the routing policy store's experiment layer (see `PolicyLayers`).
        config_file: where the SQLite log goes by default (`data/` beside it).
        log_health: where the log's health goes (`/metrics`); None = nowhere.
        workers: the gateway's processes on this host, each with its analyst: each
            analyst gets `analysis_budget / workers`, so the host's stays the budget.

    Raises:
        ValueError: duplicate experiment ids, or an arm names a missing build.
        NotFound: an experiment names an unknown model.
    """

    def __init__(
        self,
        settings: ExperimentsSettings,
        catalog: Catalog,
        control: ControlPlane,
        layers: PolicyLayers,
        config_file: Path | None = None,
        log_health: LogHealthMetrics | None = None,
        *,
        workers: int = 1,
    ) -> None:
        specs = settings.experiments
        specs = default_specs(catalog, layers.configured_policy) if specs is None else specs
        check_specs(specs, catalog)
        self.manager = ExperimentManager(specs, control, layers)
        self.control = control
        self.settings = settings
        self.log: PredictionLog | None = None
        self.analyst: Analyst | None = None  # None: in this process (a log in memory)
        if settings.log_enabled:
            url, folder = settings.database_url, data_dir(settings, config_file)
            if url is not None or folder is not None:  # a database other processes can read
                budget = settings.analysis_budget / max(1, workers)  # the host's, shared
                parallel = settings.analysis_parallel_workers
                self.analyst = Analyst(url, folder, budget=budget, parallel_workers=parallel)
            self.log = PredictionLog(
                lambda: open_store(url, folder),
                settings.queue_size, settings.batch_size, settings.flush_interval_s,
                on_written=self._written, writer=_writer_process(url, folder),
            )  # fmt: skip
        self._unchecked = False  # rows written since the stop rules were last checked
        self._catalog = catalog
        self.rollouts = RolloutController(
            self.manager, control, self._log_rows, analyse_fn=self._rollout_analysis
        )
        self._layers = layers
        control.add_schema(promotion.SCHEMA)
        self._tasks: list[asyncio.Task[None]] = []
        self._purged_at = 0.0  # when the log was last purged of rows past retention
        self._health = log_health
        self._classes = class_counts(catalog)

    def observe(self, outcome: CallOutcome) -> None:
        """The prediction log's observer: one `serve` record per answered request (its
        final call) and one `shadow` record per mirrored call. Never waits."""
        if self.log is None or not (outcome.final or outcome.kind == "shadow"):
            return
        request, response = outcome.request, outcome.response
        shadow = outcome.kind == "shadow"
        self.log.submit(
            prediction_record(
                request_id=request.request_id,
                kind="shadow" if shadow else "serve",
                ts=outcome.ts,
                experiment=self._experiment(outcome),
                model=request.model,
                arm=outcome.arm_name or outcome.arm,
                version=outcome.version,
                routing_key=request.routing_key,
                latency_s=outcome.latency_s if shadow else outcome.elapsed_s,
                status=outcome.status,
                agreed=None if outcome.comparison is None else outcome.comparison.agreed,
                failover=outcome.kind == "failover",
                outputs=None if response is None else response.outputs,
                framework=outcome.arm,
            )
        )

    def _experiment(self, outcome: CallOutcome) -> str | None:
        """The running experiment this call belongs to, if its arm was drawn by the
        experiment's split. A client-pinned request (load tests, debugging) or one routed
        while an admin override holds the model was not randomised by the experiment: it
        is logged, but outside the experiment, so it cannot bias either arm's figures."""
        request = outcome.request
        if outcome.layer != "experiment" or request.pinned or request.pinned_arm:
            return None
        return self.manager.active.get(outcome.request.model)

    async def start(self) -> None:
        """After the control plane started: store the configured experiments, start those
        due, and (with a log) run the housekeeping and rollout tasks."""
        if self.log is not None:
            await self.log.start()
        await self.manager.define()
        await self.manager.tick(time.time())
        if self.log is not None:  # both read the log
            rollout_s = self.settings.rollout_tick_s
            for call, period_s in ((self._housekeep, _TICK_S), (self.rollouts.tick, rollout_s)):
                name = f"experiments: {call.__name__}"
                self._tasks.append(asyncio.create_task(_repeat(call, period_s), name=name))

    def update_health(self) -> None:
        """Bring the log's health series on `/metrics` up to date (every second, and at
        every scrape)."""
        if self.log is not None and self._health is not None:
            self._health.update(self.log.health())

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.rollouts.release()
        except Exception:  # the database is gone: the lease expires on its own
            logger.exception("releasing the rollout lease failed")
        if self.analyst is not None:
            await self.analyst.aclose()
        if self.log is not None:
            await self.log.aclose()
            self.update_health()  # what the close could not write is counted

    async def create(self, spec: ExperimentSpec, reason: str) -> dict[str, Any]:
        """Define an experiment at run time; it starts now if due and its model is free.

        Raises:
            BadRequest: an arm names a missing build, or the model is unknown.
            Conflict: the id exists.
        """
        try:
            check_specs([spec], self._catalog)
        except NotFound as exc:
            raise BadRequest(f"model: {exc}") from None
        except ValueError as exc:  # a version without a build of that framework
            raise BadRequest(f"arms: {exc}") from None
        event = await self.manager.create(spec, reason)
        await self.manager.tick(time.time())
        return {"experiment": self.describe(spec.id), "event": event.as_dict()}

    async def transition(self, experiment: str, action: str, reason: str) -> dict[str, Any]:
        event = await self.manager.transition(experiment, action, reason)
        return {"experiment": self.describe(experiment), "event": event.as_dict()}

    async def change_split(
        self, experiment: str, split: dict[str, float], reason: str
    ) -> dict[str, Any]:
        event = await self.manager.change_split(experiment, split, reason)
        return {"experiment": self.describe(experiment), "event": event.as_dict()}

    async def promote(
        self, model: str, arm: str, reason: str, set_by: str, force: bool = False
    ) -> dict[str, Any]:
        """Make `arm` the model's default (`gateway.experiments.promote`): its `promoted`
        policy layer, the running experiment ended, a `promote` model event.

        Raises:
            NotFound: no such model. BadRequest: no such arm (the known arms named), or
            its version has no build of its framework.
            Conflict: an experiment on the model runs and `force` is not given (unless
            its rollout brought this arm to 100%).
        """
        info = self._catalog.get(model)
        specs = [state.spec for state in self.manager.states.values()]
        policies = [self._layers.configured_policy(model), self._layers.effective(model)]
        known = promotion.model_arms(model, specs, policies)
        try:
            chosen = promotion.check_arm(model, arm, known)
        except promotion.PromoteRefused as exc:
            raise BadRequest(str(exc)) from None
        if chosen.version is not None and chosen.framework not in info.versions.get(
            chosen.version, ()
        ):
            raise BadRequest(f"arm: {arm} names version {chosen.version}, which has no"
                             f" {chosen.framework} build")  # fmt: skip
        running = self.manager.active.get(model)
        forced = None
        if running is not None:
            events = await self.control.read(state_store.read_events, running)
            try:
                forced = promotion.check_running(self.manager.get(running).spec, events, arm, force)
            except promotion.PromoteRefused as exc:
                raise Conflict(str(exc)) from None
        configured = self._layers.configured_policy(model)
        policy = promotion.promoted_policy(configured, arm, chosen, known)
        reason = reason.strip() or f"promoted {arm}"
        await self._layers.set_promoted_layer(model, policy, set_by, reason)
        if running is not None:
            await self.manager.transition(running, "end", f"{arm} promoted: {reason}")
        details = {**chosen.model_dump(), "ended_experiment": running, "forced": bool(forced)}
        event = promotion.ModelEvent(model, "promote", reason, set_by, arm, chosen.version,
                                     details)  # fmt: skip
        await self.control.write(promotion.add_model_event, event)
        return {"model": model, "event": event.as_dict(), "policy": policy.model_dump()}

    async def model_events(self, model: str | None = None) -> list[dict[str, Any]]:
        """Promotions and retirements, oldest first (every model's when `model` is None)."""
        events = await self.control.read(promotion.read_model_events, model)
        return [event.as_dict() for event in events]

    def describe(self, experiment: str) -> dict[str, Any]:
        """Spec, status and `overridden_since` (seconds since the epoch, or None)."""
        state = self.manager.get(experiment)
        return {**state.as_dict(), "overridden_since": self.manager.overridden_since(experiment)}

    async def feedback(self, items: Sequence[tuple[str, int]]) -> list[FeedbackResult]:
        """Store labels (see `SqlLogStore.add_feedback`); a request logged by another
        worker, not yet written, is `pending` and joined when its row is.

        Raises:
            BadRequest: a label outside its model's classes, naming the range.
            StoreUnavailable: the database is down or hung (503).
        """
        log = self._require_log()
        try:
            check_label_range(items, max(self._classes.values(), default=0))
        except LabelOutOfRange as exc:
            raise BadRequest(str(exc)) from None
        await log.flush(CALL_TIMEOUT_S)  # this worker's queued rows: joined at once
        try:
            return await log.run(_add_feedback, items, time.time(), self._classes)
        except LabelOutOfRange as exc:
            raise BadRequest(str(exc)) from None

    async def analysis(self, experiment: str, max_age_s: float | None = None) -> dict[str, Any]:
        """`GET /admin/experiments/{id}`: the analysis (fresh; or the latest when at most
        `max_age_s` seconds old), with the experiment's status."""
        self.manager.get(experiment)  # 404 for unknown ids
        log = self._require_log()
        await log.run(_ping)  # a database down or hung: 503 naming it, within the bound
        await log.flush(CALL_TIMEOUT_S)
        await self._check_stop_rules()  # e.g. a sample size the flush just reached
        result = await self.analyse(experiment, max_age_s=max_age_s)
        described = self.describe(experiment)
        result["status"] = described["status"]
        result["overridden_since"] = described["overridden_since"]
        return result

    async def _rollout_analysis(self, experiment: str, since: float) -> dict[str, Any]:
        """What the rollout controller reads: the step's analysis without its history."""
        return await self.analyse(experiment, since, history=False)

    def analysed_at(self, experiment: str) -> float | None:
        """When the latest analysis of the whole experiment was computed (s since the
        epoch; None: none kept, or computed on this process's log thread just now)."""
        return None if self.analyst is None else self.analyst.computed_at(experiment)

    async def analyse(
        self,
        experiment: str,
        since: float | None = None,
        max_age_s: float | None = None,
        history: bool = True,
    ) -> dict[str, Any]:
        """The analysis of `experiment`'s rows (at or after `since`), from the database's
        aggregates, in the analyst process (`analyst`): never in this serving process,
        whose memory and GIL stay the requests'. An earlier result carries `stale` (its
        age), when a fresh one took over the analyst's timeout. A log in
        memory cannot be read by another process: its analysis runs on the log's thread.

        Raises:
            AnalysisUnavailable: no result within the timeout and none before (503).
        """
        events = await self.control.read(state_store.read_events, experiment)
        if self.analyst is not None:
            return await self.analyst.analyse(experiment, since, events, max_age_s, history)
        log = self._require_log()
        args = (experiment, since, events, history)
        result = await log.run(_analyse_store, *args, timeout_s=_ANALYSIS_TIMEOUT_S)
        return dict(result)

    async def summaries(self) -> list[dict[str, Any]]:
        """Every experiment with live per-arm figures from the log (every process's)."""
        live = await self._read(_summary, "summary") if self.log is not None else {}
        return [
            {**self.describe(exp_id), "arms": live.get(exp_id, {})}
            for exp_id in sorted(self.manager.states)
        ]

    def log_counters(self) -> dict[str, Any]:
        """This process's log figures (every worker's are on `/metrics`)."""
        if self.log is None:
            return {"enabled": False}
        health = self.log.health()
        return {
            "enabled": True, "queued": self.log.queued, "waiting": health.waiting,
            "store_up": health.store_up, **health.counters.__dict__,
        }  # fmt: skip

    def _require_log(self) -> PredictionLog:
        if self.log is None:
            raise LogUnavailable("the prediction log is disabled (experiments.log_enabled)")
        return self.log

    def _written(self, count: int) -> None:
        self._unchecked = True

    async def _check_stop_rules(self) -> None:
        """End running experiments whose every arm served its sample size, counted in the
        log (all processes' rows); when several processes see it, one ends it."""
        self._require_log()
        self._unchecked = False
        for exp_id, state in list(self.manager.states.items()):
            if state.status != "running" or state.spec.stop.sample_size_per_arm is None:
                continue
            if state.sample_reached(await self._read(_arm_counts, "arm_counts", exp_id)):
                await self.manager.auto(exp_id, "end", "stop rule: sample size per arm reached")

    async def _read(self, call: Callable[..., Any], name: str, *args: Any) -> Any:
        """A read of the log that grows with it: in the analyst process when there is one
        (never in this serving process), else on the log's thread (a log in memory). A
        round trip on the log's thread first, within its call bound: a database that is
        down or hung is a 503 naming it at once, not after the analyst's timeout."""
        if self.analyst is not None:
            await self._require_log().run(_ping)
            return await self.analyst.read(name, *args)
        return await self._require_log().run(call, *args, timeout_s=_ANALYSIS_TIMEOUT_S)

    async def _log_rows(self, experiment: str, since: float) -> Watermark | None:
        """The controller's cue: the latest row's and label's ts and arrival of
        `experiment` at or after `since`, None without a row: index lookups, whatever
        the log's size (`LogStore.watermark`)."""
        log = self._require_log()
        await log.flush(CALL_TIMEOUT_S)  # this process's rows; others flush on their own
        return await log.run(_watermark, experiment, since)

    async def _housekeep(self) -> None:
        """Time rules, stop rules, retention (purged at most every `_PURGE_EVERY_S`)."""
        now = time.time()
        self.update_health()
        await self.manager.tick(now)
        if self._unchecked:
            await self._check_stop_rules()
        retention = self.settings.retention_days
        if retention is not None and now - self._purged_at >= _PURGE_EVERY_S and self.log:
            await self.log.run(_purge, now - retention * 86400)
            self._purged_at = now


def _writer_process(database_url: str | None, folder: Path | None) -> WriterProcess | None:
    """The log's writer process, unless the log is in memory (a SQLite database in memory
    lives in one process: its own storage thread writes it). None here is the one switch
    back to the storage-thread writer (measured at the same CPU; see `log_writer`)."""
    if database_url is None and folder is None:
        return None
    return WriterProcess(database_url, folder)


async def _repeat(call: Callable[[], Awaitable[object]], period_s: float) -> None:
    """`call()` every `period_s` until cancelled; a failing call (the database restarts)
    is logged and tried again at the next period."""
    name = getattr(call, "__name__", call)
    while True:
        try:
            await call()
        except (StoreUnavailable, AnalysisUnavailable) as exc:  # down or hung: no traceback
            logger.warning("experiments: %s skipped: %s", name, exc.message)
        except Exception:
            logger.exception("experiments: %s failed", name)
        await asyncio.sleep(period_s)


# Store calls, run on the log's storage thread.
def _arm_counts(store: LogStore, experiment: str) -> dict[str, int]:
    return store.arm_counts(experiment)


def _ping(store: LogStore) -> None:
    store.ping()


def _watermark(store: LogStore, experiment: str, since: float) -> Watermark | None:
    return store.watermark(experiment, since)


def _analyse_store(
    store: LogStore, experiment: str, since: float | None, events: Sequence[Event], history: bool
) -> Any:
    return analyse_store(store, experiment, since, events, history)


def _add_feedback(
    store: LogStore, items: Sequence[tuple[str, int]], ts: float, classes: dict[str, int]
) -> Any:
    return store.add_feedback(items, ts, classes)


def _purge(store: LogStore, before: float) -> int:
    return store.purge(before)


def _summary(store: LogStore) -> Any:
    return store.summary()
