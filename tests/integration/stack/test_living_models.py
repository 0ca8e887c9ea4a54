"""A new version lands, and the old one is retired, under load, without a failed request
(issue 22): real TF Serving, real TorchServe, the gateway with 1 and 2 workers.

8 clients send to digits-mlp: 2 unpinned (each with its routing key, so both arms get some),
3 pinned to TensorFlow, 3 pinned to PyTorch. Meanwhile `python -m trainers` trains version 2
as the README says; TF Serving picks it up, the registrar registers it with TorchServe, the
gateway's catalog moves `latest` to 2 on both arms; `dualserve retire digits-mlp 1` takes
version 1 out of both backends. Every request is answered 200.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import running_stack

REPO = Path(__file__).resolve().parents[3]
MODEL = "digits-mlp"
CLIENTS: list[dict[str, str]] = [
    {"X-Routing-Key": "user-a"},
    {"X-Routing-Key": "user-b"},
    *[{"X-Backend": "tensorflow"}] * 3,
    *[{"X-Backend": "pytorch"}] * 3,
]


@dataclass(frozen=True)
class Answer:
    client: int
    sent: float
    status: int
    backend: str | None
    version: str | None
    error: str


class Clients:
    """The 8 closed-loop clients, each on its own thread with its own connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True)
            for i in range(len(CLIENTS))
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self, index: int) -> None:
        body = {"instances": [[float(i % 17) for i in range(64)]]}
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    reply = client.post(self.url, json=body, headers=CLIENTS[index])
                    status, error = reply.status_code, reply.text[:200]
                    headers = reply.headers
                except httpx.HTTPError as exc:
                    status, error, headers = 0, repr(exc), httpx.Headers()
                self.answers.append(
                    Answer(
                        index, sent, status, headers.get("X-Backend"),
                        headers.get("X-Model-Version"), "" if status == 200 else error,
                    )
                )  # fmt: skip

    def wait_for(self, what: str, condition: Callable[[list[Answer]], bool], limit: float) -> None:
        deadline = time.monotonic() + limit
        while not condition(list(self.answers)):
            assert time.monotonic() < deadline, f"not within {limit} s: {what}"
            assert all(a.status == 200 for a in self.answers), _failures(self.answers)
            self._stop.wait(0.1)


def _failures(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200][:5]


def _dualserve(*args: str, stack: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    paths = stack["paths"]
    command = [sys.executable, "-m", "dualserve", *args]
    command += ["--model-store", str(paths.model_store), "--run-dir", str(paths.run_dir)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def _models(stack: dict[str, Any]) -> dict[str, Any]:
    done = _dualserve("status", "--json", stack=stack)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout)["models"][MODEL])


def _routable(models: dict[str, Any]) -> dict[str, list[int]]:
    """What TF Serving and TorchServe serve (the two arms `latest` is computed from)."""
    return {fw: models["served"][fw] for fw in ("tensorflow", "pytorch")}


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def stack(
    request: pytest.FixtureRequest,
    trained_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    """A stack on a copy of the trained store (version 1 of each model): training here
    must not change the store other modules share.

    On this shared 2-core machine the retraining, TorchServe's new worker and other
    sessions' tests starve the backends for seconds: the gateway's upstream deadlines are
    raised (in its environment) so that what is tested is the landing, not the CPU."""
    for backend in ("TENSORFLOW", "PYTORCH"):
        monkeypatch.setenv(f"DUALSERVE_{backend}__TIMEOUT_S", "30")
    store = tmp_path / "model_store"
    shutil.copytree(trained_store, store)
    with running_stack(store, tmp_path / "run", gateway_workers=request.param) as state:
        yield state


def test_a_new_version_lands_and_the_old_one_leaves_without_a_failed_request(
    stack: dict[str, Any], figures: Callable[[str], None]
) -> None:
    url = f"{stack['gateway']['rest']}/v1/models/{MODEL}:predict"
    before = _models(stack)
    assert before["routed"] == 1
    assert before["served"] == {"tensorflow": [1], "pytorch": [1], "pytorch@oip": [1]}
    with Clients(url) as clients:
        everyone = set(range(len(CLIENTS)))
        clients.wait_for("every client answered", lambda a: {x.client for x in a} == everyone, 60)
        train = subprocess.run(
            [sys.executable, "-m", "trainers", "--framework", "both", "--model", "mlp",
             "--model-store", str(stack["store"])],
            capture_output=True, text=True, cwd=REPO, timeout=900,
        )  # fmt: skip
        assert train.returncode == 0, train.stdout + train.stderr
        trained = time.monotonic()

        def landed(answers: list[Answer]) -> bool:
            v2 = {(a.client, a.backend) for a in answers if a.version == "2"}
            every_client = {c for c, _ in v2} == set(range(len(CLIENTS)))
            return every_client and {b for _, b in v2} == {"tensorflow", "pytorch"}

        clients.wait_for("version 2 answered by both frameworks, to every client", landed, 180)
        landed_at = time.monotonic()
        landed_models = _models(stack)
        retired = _dualserve("retire", MODEL, "1", stack=stack)
        assert retired.returncode == 0, retired.stdout + retired.stderr
        after_retire = time.monotonic()
        clients.wait_for(
            "every client answered after the retirement",
            lambda a: {x.client for x in a if x.sent > after_retire} == everyone,
            60,
        )
    answers = clients.answers
    figures(
        f"living models ({stack['gateway']['workers']} worker(s)): {len(answers)} requests,"
        f" {len(_failures(answers))} failed; every client on v2 {landed_at - trained:.1f} s"
        " after the trainer exited"
    )
    assert _failures(answers) == [] and len(answers) > 100
    # latest moved on both arms, and the retired version answered nothing sent after it left
    assert landed_models["routed"] == 2 and landed_models["routed_since"] is not None
    assert _routable(landed_models) == {"tensorflow": [1, 2], "pytorch": [1, 2]}
    late = {(a.backend, a.version) for a in answers if a.sent > after_retire}
    assert late == {("tensorflow", "2"), ("pytorch", "2")}
    final = _models(stack)
    assert final["routed"] == 2
    assert _routable(final) == {"tensorflow": [2], "pytorch": [2]}
    # The bundled OIP server follows the manifest (its newest two .pt2), not `retire`.
    assert 2 in final["served"]["pytorch@oip"]
    assert (stack["store"] / "retired" / "tensorflow" / MODEL / "1").is_dir()
