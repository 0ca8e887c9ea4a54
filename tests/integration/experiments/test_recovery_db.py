"""The experiments database comes back, and the gateway follows by itself (issue 24).

A PostgreSQL cluster of this module's own (initdb + pg_ctl, as conftest's), which the
tests kill, restart, stop (SIGSTOP on the postmaster and every backend) and wake; the
real backends; a gateway with two workers on that database. Figures are printed; what is
asserted is structure (which bound answered, counts, order), and each wait on the gateway
is bounded (a poll deadline that fails the test on expiry), generously.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backends.process import free_port
from gateway.control.plane import CALL_TIMEOUT_S
from gateway.processes.launcher import start_gateway, stop_gateway
from tests.integration.conftest import _pg_bin, _run
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
MODEL = "digits-mlp"
POLICY = f"/admin/models/{MODEL}/policy"
NO_SHADOW = {"policy": {"shadow_sample_rate": 0.0}, "reason": "one log row per request"}
CLIENTS = 8
RECOVERY_BOUND_S = 30.0  # generous enclosure of the reconnect backoff (2 s at most)
Gateway = tuple[str, dict[str, str]]  # REST base URL, admin header


class Cluster:
    """A throwaway PostgreSQL cluster the test may kill, restart, stop and wake."""

    def __init__(self, root: Path) -> None:
        self.bin, self.data, self.port = _pg_bin(), root / "data", free_port()
        self.options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {root}"
        self.log = root / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        _run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")

    def start(self) -> None:
        pg_ctl = str(self.bin / "pg_ctl")
        _run(pg_ctl, "-D", str(self.data), "-o", self.options, "-l", str(self.log), "-w", "start")

    def kill(self) -> None:
        """Immediate shutdown: every backend ends at once, no checkpoint (a crash)."""
        _run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def processes(self) -> list[psutil.Process]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        parent = psutil.Process(postmaster)
        return [parent, *parent.children(recursive=True)]

    def signal(self, signum: int) -> None:
        for process in self.processes():
            os.kill(process.pid, signum)

    def count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            row = conn.execute(sql, params).fetchone()
            return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="dualserve-pg-recovery-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    db = Cluster(root)
    db.start()
    try:
        yield db
    finally:
        try:
            db.signal(signal.SIGCONT)
            _run(str(db.bin / "pg_ctl"), "-D", str(db.data), "-m", "immediate", "-w", "stop")
        except Exception:  # already stopped by a failed test
            pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:1], "mlp")


@pytest.fixture
def gateway(
    stack: dict[str, Any], cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    """Two workers on the cluster, beside the module stack's own gateway (a fresh
    database schema per test: the tables are emptied first)."""
    monkeypatch.setenv("DUALSERVE_EXPERIMENTS__DATABASE_URL", cluster.url)
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        for table in ("predictions", "feedback", "policy_layers"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    state = stack["state"]
    started = start_gateway(
        state.tensorflow, state.pytorch, stack["store"].resolve(), tmp_path, workers=2
    )
    token = Path(started.admin_token_file).read_text().strip()
    gateway = started.rest, {"Authorization": f"Bearer {token}"}
    try:
        assert _admin(gateway, "PATCH", POLICY, json=NO_SHADOW).status_code == 200
        yield gateway
    finally:
        stop_gateway(tmp_path)


def _admin(gateway: Gateway, method: str, path: str, **kw: Any) -> httpx.Response:
    rest, headers = gateway
    return httpx.request(method, f"{rest}{path}", headers=headers, timeout=60, **kw)


def _predict(rest: str, x: np.ndarray, client: httpx.Client | None = None) -> httpx.Response:
    body, url = {"instances": x.tolist()}, f"{rest}/v1/models/{MODEL}:predict"
    if client is None:
        return httpx.post(url, json=body, timeout=60)
    return client.post(url, json=body)


def _log_figures(rest: str) -> dict[str, float]:
    """The log's figures summed over every worker, from `/metrics`."""
    text = httpx.get(f"{rest}/metrics", timeout=30).text
    figures: dict[str, float] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dualserve_prediction_log_records_total":
                figures[sample.labels["fate"]] += sample.value
            elif sample.name == "dualserve_prediction_log_waiting_records":
                figures["waiting"] += sample.value
            elif sample.name == "dualserve_prediction_log_stores_down":
                figures["stores_down"] += sample.value
    return figures


def _until(check: Callable[[], bool], bound_s: float) -> float:
    """Poll `check` until it holds (seconds taken, a figure to print); `bound_s` only ends
    a wait that would otherwise hang (a generous enclosure, not a speed claim)."""
    start = time.monotonic()
    deadline = start + bound_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"the condition never held ({bound_s} s waited)")
        time.sleep(0.05)  # the poll's pace, not a synchronisation
    return time.monotonic() - start


class Load:
    """`CLIENTS` keep-alive clients predicting until stopped; statuses counted."""

    def __init__(self, rest: str, x: np.ndarray) -> None:
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(rest, x)) for _ in range(CLIENTS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _client(self, rest: str, x: np.ndarray) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                try:
                    status = _predict(rest, x, client).status_code
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    continue
                with self._lock:
                    self.statuses[status] += 1

    @property
    def answered(self) -> int:
        with self._lock:
            return sum(self.statuses.values())


def test_postgres_killed_and_restarted_under_load(
    gateway: Gateway, cluster: Cluster, digits: np.ndarray, figures: Callable[[str], None]
) -> None:
    rest = gateway[0]
    with Load(rest, digits) as load:
        _until(lambda: load.answered >= 50, RECOVERY_BOUND_S)
        cluster.kill()
        killed_at = load.answered
        down = _admin(gateway, "PATCH", POLICY, json={**NO_SHADOW, "reason": "while down"})
        assert down.status_code == 503 and "PostgreSQL" in down.json()["error"], down.text
        assert int(down.headers["Retry-After"]) >= 1
        listing = _admin(gateway, "GET", "/admin/experiments")
        assert listing.status_code == 503, listing.text
        _until(lambda: load.answered >= killed_at + 100, RECOVERY_BOUND_S)  # served meanwhile
        cluster.start()
        back = time.monotonic()
        admin_s = _until(
            lambda: _admin(gateway, "PATCH", POLICY, json=NO_SHADOW).status_code == 200,
            RECOVERY_BOUND_S,
        )
        during = load.answered - killed_at
        _until(lambda: load.answered >= killed_at + during + 50, RECOVERY_BOUND_S)
    answered = load.answered

    def settled() -> bool:  # every worker synced its figures, nothing waits
        f = _log_figures(rest)
        return f["waiting"] == 0 and f["written"] + f["dropped"] + f["write_errors"] >= answered

    settle_s = _until(settled, RECOVERY_BOUND_S)
    f = _log_figures(rest)
    rows = cluster.count("SELECT COUNT(*) FROM predictions WHERE kind = 'serve'")
    lost = f["dropped"] + f["write_errors"]
    figures(
        f"postgres killed under {CLIENTS} clients: {answered} answered ({during} while down),"
        f" failed {answered - load.statuses[200]}, errors {len(load.errors)};"
        f" admin 200 again {admin_s:.2f} s after pg_ctl start returned"
        f" ({time.monotonic() - back:.1f} s ago); log: {f['written']:.0f} written,"
        f" {f['dropped']:.0f} dropped, {f['write_errors']:.0f} write errors,"
        f" {rows} rows in PostgreSQL, settled in {settle_s:.2f} s"
    )
    assert load.statuses[200] == answered and not load.errors  # 0 failed predictions
    assert rows == f["written"]  # every row counted written is in the table
    assert answered == rows + lost  # 0 unaccounted: each answered request logged or lost
    assert f["stores_down"] == 0


def test_postgres_hung_makes_admin_calls_503_and_all_recovers(
    gateway: Gateway, cluster: Cluster, digits: np.ndarray, figures: Callable[[str], None]
) -> None:
    rest = gateway[0]
    cluster.signal(signal.SIGSTOP)
    try:
        timings: dict[str, float] = {}
        for name, method, path, body in (
            ("PATCH policy", "PATCH", POLICY, {"policy": {"weights": {"tensorflow": 100,
             "pytorch": 0}}, "reason": "given up"}),
            ("GET experiments", "GET", "/admin/experiments", None),
            ("PATCH again", "PATCH", POLICY, {"policy": {"weights": {"tensorflow": 100,
             "pytorch": 0}}, "reason": "given up"}),
        ):  # fmt: skip
            start = time.monotonic()
            reply = _admin(gateway, method, path, json=body)
            timings[name] = time.monotonic() - start
            assert reply.status_code == 503, reply.text
            assert "Retry-After" in reply.headers
            # bounded: the 503 is the gateway's own call bound answering (the time taken is a
            # figure, printed below, never asserted: issue 26), not a late database's answer
            assert f"did not answer within {CALL_TIMEOUT_S:g} s" in reply.text, reply.text
        predicted = [_predict(rest, digits).status_code for _ in range(20)]
        assert predicted == [200] * 20  # predictions never wait for the database
    finally:
        cluster.signal(signal.SIGCONT)
    woke = time.monotonic()
    recover_s = _until(
        lambda: _admin(gateway, "GET", "/admin/experiments").status_code == 200, RECOVERY_BOUND_S
    )
    _until(lambda: _log_figures(rest)["stores_down"] == 0, RECOVERY_BOUND_S)
    # Both workers' control threads are free again: no write given up on was applied.
    for _ in range(6):
        assert _admin(gateway, "GET", "/admin/experiments").status_code == 200
    given_up = cluster.count("SELECT COUNT(*) FROM policy_layers WHERE reason = 'given up'")
    source = _admin(gateway, "GET", POLICY).json()["layers"]["override"]["reason"]
    figures(
        "postgres hung: admin answered 503 in "
        + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        + f"; 200 again {recover_s:.2f} s after SIGCONT ({time.monotonic() - woke:.1f} s ago);"
        f" given-up writes applied: {given_up}"
    )
    assert given_up == 0 and source == NO_SHADOW["reason"]
    assert _admin(gateway, "PATCH", POLICY, json=NO_SHADOW).status_code == 200


def test_feedback_right_after_a_prediction_on_either_worker_is_recorded(
    gateway: Gateway, cluster: Cluster, digits: np.ndarray, figures: Callable[[str], None]
) -> None:
    rest = gateway[0]
    statuses: Counter[int] = Counter()
    ids = []
    for _ in range(30):  # each call on a fresh connection: either worker may take it
        reply = _predict(rest, digits)
        assert reply.status_code == 200, reply.text
        request_id = reply.headers["X-Request-Id"]
        label = int(reply.json()["predictions"][0]["class"])
        fed = httpx.post(f"{rest}/v1/feedback", json={"request_id": request_id, "label": label})
        statuses[fed.status_code] += 1
        ids.append(request_id)
    assert set(statuses) <= {201, 202}, statuses  # recorded, or pending its row

    def joined() -> int:
        return cluster.count(
            "SELECT COUNT(*) FROM predictions p JOIN feedback f ON f.request_id = p.request_id"
            " WHERE p.kind = 'serve' AND p.request_id = ANY(%s)",
            (ids,),
        )

    join_s = _until(lambda: joined() == 30, RECOVERY_BOUND_S)
    figures(
        f"30 predict-then-feedback pairs, 2 workers: {statuses[201]} recorded at once,"
        f" {statuses[202]} pending; {joined()} of 30 joined {join_s:.2f} s after the last"
    )
    for label in (10, 1_000_000):
        bad = httpx.post(f"{rest}/v1/feedback", json={"request_id": ids[0], "label": label})
        assert bad.status_code == 400 and "0..9" in bad.json()["error"], bad.text
