"""The gateway with two worker processes: alone (ports, start-up failure, stop), then in
front of the real backends.

Which worker answered is read from prometheus_client's own per-process files (one set per
worker pid, written before the worker sends its answer), so no test needs a sleep. The
module's own stack is stopped by the last test, which checks that nothing survives.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import yaml
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from backends.process import pid_alive
from dualserve.run_state import GatewayState
from dualserve.stack import down, status
from gateway.processes.workers import read_workers
from tests.integration.conftest import running_stack
from tests.triton_clients import call
from tests.unit.gateway.gateway_fakes import make_store
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
MODEL = "digits-mlp"
WORKERS = 2
REQUESTS = 60
FOLLOW_BOUND_S = 60.0  # the wait for every worker to follow a PATCH (a bound, not a figure)


def _start_alone(tmp_path: Path, store: Path) -> subprocess.Popen[bytes]:
    """`python -m gateway` with two workers on ports 0, backends unreachable."""
    config = {
        "port": 0,
        "grpc_port": 0,
        "workers": WORKERS,
        "model_store": str(store),
        "tensorflow": {"transport": "rest", "rest": ["http://127.0.0.1:1"]},
        "pytorch": {"transport": "rest", "rest": ["http://127.0.0.1:1"]},
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "gateway", "--config", "gateway.yaml", "--run-dir", "."]
    with open(tmp_path / "gateway.log", "wb") as log:
        return subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)


def _listening_ports(pid: int) -> set[int]:
    return {
        c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == "LISTEN"
    }


def test_two_workers_bind_both_ports_chosen_for_port_zero_and_stop_on_sigterm(
    tmp_path: Path,
) -> None:
    gateway = _start_alone(tmp_path, make_store(tmp_path / "store"))
    try:
        deadline = time.monotonic() + 120
        while (record := read_workers(tmp_path)) is None:
            assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)  # polling the supervisor's record with a bounded deadline
        assert record["supervisor"] == gateway.pid and len(record["workers"]) == WORKERS
        assert record["port"] > 0 and record["grpc_port"] > 0
        for worker in record["workers"]:  # each listens on both: one REST socket, SO_REUSEPORT gRPC
            assert {record["port"], record["grpc_port"]} <= _listening_ports(worker)
        assert httpx.get(f"http://127.0.0.1:{record['port']}/healthz").status_code == 200
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=60) == 0
        assert not any(pid_alive(worker) for worker in record["workers"])
    finally:
        gateway.kill()


def test_a_worker_that_cannot_start_stops_the_gateway_instead_of_restarting(
    tmp_path: Path,
) -> None:
    (tmp_path / "empty").mkdir()
    gateway = _start_alone(tmp_path, tmp_path / "empty")
    try:
        assert gateway.wait(timeout=120) == 3  # uvicorn's STARTUP_FAILURE
    finally:
        gateway.kill()
    log = (tmp_path / "gateway.log").read_text()
    assert "cannot start" in log and "manifest.json does not exist" in log
    assert log.count("cannot start") <= WORKERS  # no worker was started again
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def stack(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("workers")
    with running_stack(trained_store, run_dir, gateway_workers=WORKERS) as state:
        yield state


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:1], "mlp")


def _gateway_status(stack: dict[str, Any]) -> GatewayState:
    """The running gateway's entry of `dualserve status` (its workers as they are now)."""
    gateway = status(stack["paths"]).gateway
    assert gateway is not None, "the gateway does not run"
    return gateway


def _per_worker(stack: dict[str, Any], protocol: str) -> dict[int, float]:
    """Requests each live worker answered, from its own metric files."""
    folder = stack["paths"].gateway_dir / "prometheus"
    pids = _gateway_status(stack).worker_pids
    return {pid: _requests(MultiProcessCollector.merge(folder.glob(f"*_{pid}.db")), protocol) for pid in pids}  # fmt: skip


def _requests(families: Any, protocol: str) -> float:
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "dualserve_requests_total" and sample.labels["protocol"] == protocol
    )


def _metrics_text(stack: dict[str, Any]) -> str:
    """`/metrics` over a fresh connection: whichever worker accepts it answers."""
    return httpx.get(f"{stack['gateway']['rest']}/metrics", timeout=10).text


def _scraped(stack: dict[str, Any], protocol: str) -> float:
    return _requests(text_string_to_metric_families(_metrics_text(stack)), protocol)


def _rest_predict(stack: dict[str, Any], x: np.ndarray, key: str) -> str:
    """One prediction over a new connection; the arm that answered."""
    reply = httpx.post(
        f"{stack['gateway']['rest']}/v1/models/{MODEL}:predict",
        json={"instances": x.tolist()},
        headers={"X-Routing-Key": key},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return str(reply.headers["X-Backend"])


def _grpc_infer(stack: dict[str, Any], x: np.ndarray, repeat: int = 1) -> None:
    """`repeat` Open Inference Protocol calls, each on a new channel with a connection of its
    own (gRPC shares connections between channels unless told not to)."""
    tensor = {"name": "input", "datatype": "FP32", "array": x}
    result = call(
        "grpc_infer", url=stack["gateway"]["grpc"], model=MODEL, inputs=[tensor],
        want=["class"], channel_args=[["grpc.use_local_subchannel_pool", 1]], repeat=repeat,
    )  # fmt: skip
    assert result["outputs"]["class"].shape == (1,)


def test_status_lists_every_worker_under_the_gateway(stack: dict[str, Any]) -> None:
    gateway = _gateway_status(stack)
    assert gateway.workers == WORKERS and len(set(gateway.worker_pids)) == WORKERS
    children = {p.pid for p in psutil.Process(gateway.pid).children()}
    assert set(gateway.worker_pids) <= children  # the supervisor's own workers


@pytest.mark.parametrize("protocol", ["tfserving-rest", "v2-grpc"])
def test_fresh_connections_reach_both_workers_and_metrics_count_each_once(
    stack: dict[str, Any], x: np.ndarray, protocol: str
) -> None:
    before, scraped_before = _per_worker(stack, protocol), _scraped(stack, protocol)
    if protocol == "v2-grpc":
        _grpc_infer(stack, x, repeat=REQUESTS)  # a new client, so a new connection, each
    else:
        for i in range(REQUESTS):
            _rest_predict(stack, x, f"user-{i}")
    after = _per_worker(stack, protocol)
    served = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    assert len(served) == WORKERS and all(n > 0 for n in served.values()), served
    assert sum(served.values()) == REQUESTS
    for _ in range(5):  # whichever worker answers the scrape sums every worker
        assert _scraped(stack, protocol) - scraped_before == REQUESTS


def _every_worker_follows(stack: dict[str, Any], x: np.ndarray, keys: int = 40) -> bool:
    """Whether `keys` routing keys (a 50/50 split sends about half to pytorch) all went to
    tensorflow, on new connections, and every live worker answered some of them."""
    before = _per_worker(stack, "tfserving-rest")
    arms = [_rest_predict(stack, x, f"probe-{i}") for i in range(keys)]
    after = _per_worker(stack, "tfserving-rest")
    answered = all(after[pid] > before.get(pid, 0.0) for pid in after)
    return answered and arms.count("tensorflow") == keys


def test_a_patch_through_one_connection_is_followed_by_every_worker(
    stack: dict[str, Any], x: np.ndarray
) -> None:
    """The workers follow the change counter (every 0.25 s): a second on an idle machine. The
    wait for it is bounded (FOLLOW_BOUND_S, failing on expiry); its length is not asserted
    (issue 26: no wall-clock assertion)."""
    weights = {"weights": {"tensorflow": 100, "pytorch": 0}}
    url = f"{stack['gateway']['rest']}/admin/models/{MODEL}/policy"
    reply = httpx.patch(url, json=weights, headers=stack["admin"], timeout=10)
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + FOLLOW_BOUND_S
    while not _every_worker_follows(stack, x):
        assert time.monotonic() < deadline, "the workers did not follow the PATCH"
    before = _per_worker(stack, "tfserving-rest")
    arms = [_rest_predict(stack, x, f"user-{i}") for i in range(400)]
    after = _per_worker(stack, "tfserving-rest")
    assert arms.count("tensorflow") == 400  # 50/50 would send about 200 keys to pytorch
    assert all(after[pid] > before.get(pid, 0.0) for pid in after)  # both workers answered


def test_a_killed_worker_is_replaced_and_its_counts_are_kept(
    stack: dict[str, Any], x: np.ndarray
) -> None:
    for i in range(REQUESTS):
        _rest_predict(stack, x, f"before-the-kill-{i}")
    served = _per_worker(stack, "tfserving-rest")
    victim = max(served, key=lambda pid: served[pid])  # it has a breaker series of its own
    total = _scraped(stack, "tfserving-rest")
    assert f'pid="{victim}"' in _metrics_text(stack)
    psutil.Process(victim).kill()
    deadline = time.monotonic() + 60
    while (pids := _gateway_status(stack).worker_pids) and victim in pids:
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.1)  # polling the supervisor's record with a bounded deadline
    assert len(pids) == WORKERS
    _rest_predict(stack, x, "after-the-kill")
    assert _scraped(stack, "tfserving-rest") == total + 1  # the dead worker's counts stay
    assert f'pid="{victim}"' not in _metrics_text(stack)  # its live gauges do not


def test_down_stops_the_supervisor_and_every_worker(stack: dict[str, Any]) -> None:
    supervisor = psutil.Process(_gateway_status(stack).pid)
    family = [supervisor, *supervisor.children(recursive=True)]
    assert len(family) > WORKERS
    assert "gateway" in down(stack["paths"])
    assert not any(pid_alive(p.pid) for p in family)
    assert status(stack["paths"]).gateway is None
