"""Three arms on the real stack, then a rollout and a promotion (issue 22).

Version 2 of digits-mlp is trained while the stack serves version 1 (as the README says:
TF Serving keeps both, the registrar registers the new `.mar` with TorchServe). Then an
experiment with three arms, TF v1 (control), TF v2 and PyTorch v2: every routing key
keeps its arm, the one a hand computation of the split's hash intervals gives; the
analysis compares each candidate with the control; the report names the arms. Last, a
rollout of PyTorch v2 from the same arms reaches 100%, and `dualserve promote` makes it
the model's default (refused before, while the rollout had not reached it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import running_stack
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
MODEL, DEFAULT_EXPERIMENT = "digits-mlp", "digits-mlp-ab"
ARMS = {
    "tf-v1": {"framework": "tensorflow", "version": 1},
    "tf-v2": {"framework": "tensorflow", "version": 2},
    "pt-v2": {"framework": "pytorch", "version": 2},
}
SERVES = {name: (arm["framework"], str(arm["version"])) for name, arm in ARMS.items()}
SPLIT = {"tf-v1": 40.0, "tf-v2": 30.0, "pt-v2": 30.0}
# No labels here: decide on errors and latency, margins loose enough for a few units.
RULES = {
    "decision_metrics": ["error_rate", "latency_p99_ms"],
    "margins": {"error_rate_points": 100, "p99_ms": 1000},
}
DEADLINE_S = 180.0
_keys = itertools.count()


@pytest.fixture(scope="module")
def stack(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A stack on a copy of the trained store (training here must not change the shared
    one); upstream deadlines raised as in test_living_models (a 2-core box that trains)."""
    root = tmp_path_factory.mktemp("three-arms")
    store = root / "model_store"
    shutil.copytree(trained_store, store)
    with pytest.MonkeyPatch.context() as patch:
        for backend in ("TENSORFLOW", "PYTORCH"):
            patch.setenv(f"DUALSERVE_{backend}__TIMEOUT_S", "30")
        with running_stack(store, root / "run") as state:
            yield state


@pytest.fixture(scope="module")
def x() -> list[list[float]]:
    return to_model_input(load_dataset("digits").test.x[:1], "mlp").tolist()  # type: ignore[no-any-return]


def _admin(stack: dict[str, Any], method: str, path: str, **kw: Any) -> httpx.Response:
    url = f"{stack['gateway']['rest']}{path}"
    return httpx.request(method, url, headers=stack["admin"], timeout=60, **kw)


def _dualserve(stack: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dualserve", *args, "--run-dir", str(stack["paths"].run_dir)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def _predict(client: httpx.Client, rest: str, x: Any, key: str, path: str = "") -> httpx.Response:
    url = f"{rest}/v1/models/{MODEL}{path}:predict"
    return client.post(url, json={"instances": x}, headers={"X-Routing-Key": key})


def _point(key: str) -> float:
    """The split's hash of a routing key, written out: blake2b-64, big-endian, / 2**64."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def _arm_by_hand(key: str) -> str:
    """The arm whose interval holds the key: tf-v1 [0, .4), tf-v2 [.4, .7), pt-v2 [.7, 1)."""
    point = _point(key)
    return "tf-v1" if point < 0.4 else "tf-v2" if point < 0.7 else "pt-v2"


def _wait(what: str, done: Callable[[], bool], limit: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"not within {limit} s: {what}"
        time.sleep(0.5)


def _version_2_everywhere(stack: dict[str, Any], x: Any) -> bool:
    rest = stack["gateway"]["rest"]
    with httpx.Client(timeout=60) as client:
        for framework in ("tensorflow", "pytorch"):
            reply = client.post(
                f"{rest}/v1/models/{MODEL}/versions/2:predict",
                json={"instances": x}, headers={"X-Backend": framework},
            )  # fmt: skip
            if reply.status_code != 200:
                return False
    return True


def _land_version_2(stack: dict[str, Any], x: Any) -> None:
    train = subprocess.run(
        [sys.executable, "-m", "trainers", "--framework", "both", "--model", "mlp",
         "--model-store", str(stack["store"])],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )  # fmt: skip
    assert train.returncode == 0, train.stdout + train.stderr
    _wait("version 2 served by both frameworks", lambda: _version_2_everywhere(stack, x))


def _weights(stack: dict[str, Any]) -> dict[str, float]:
    layers = _admin(stack, "GET", f"/admin/models/{MODEL}/policy").json()["layers"]
    return dict(layers["experiment"]["policy"]["weights"]) if layers["experiment"] else {}


def _traffic(stack: dict[str, Any], x: Any, n: int) -> None:
    rest = stack["gateway"]["rest"]
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: _predict(client, rest, x, f"u-{next(_keys)}"), range(n)))
    assert all(r.status_code == 200 for r in replies), replies[0].text


def test_three_arms_split_per_key_are_analysed_against_the_control_and_one_is_promoted(
    stack: dict[str, Any], x: Any, tmp_path: Path, figures: Callable[[str], None]
) -> None:
    _land_version_2(stack, x)
    ended = _admin(stack, "POST", f"/admin/experiments/{DEFAULT_EXPERIMENT}/end",
                   json={"reason": "three arms next"})  # fmt: skip
    assert ended.status_code == 200, ended.text
    spec = {"id": "abn", "model": MODEL, "arms": ARMS, "control": "tf-v1", "split": SPLIT, **RULES}
    created = _admin(stack, "POST", "/admin/experiments", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["experiment"]["status"] == "running"

    # The split holds per routing key: each key's two answers come from its own arm.
    keys = [f"user-{i}" for i in range(90)]
    rest = stack["gateway"]["rest"]
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda k: (k, _predict(client, rest, x, k)), keys * 2))
    served: dict[str, set[tuple[str, str]]] = {}
    for key, reply in replies:
        assert reply.status_code == 200, reply.text
        served.setdefault(key, set()).add((reply.headers["X-Backend"], reply.headers["X-Model-Version"]))  # fmt: skip
    assert served == {key: {SERVES[_arm_by_hand(key)]} for key in keys}
    expected_units = {arm: sum(_arm_by_hand(k) == arm for k in keys) for arm in ARMS}
    assert all(n > 0 for n in expected_units.values()), expected_units

    # The analysis compares each candidate with the control, at the corrected alpha.
    analysis = _admin(stack, "GET", "/admin/experiments/abn").json()
    assert (analysis["control"], analysis["candidates"]) == ("tf-v1", ["tf-v2", "pt-v2"])
    assert set(analysis["comparisons"]) == {"tf-v2", "pt-v2"}
    assert analysis["comparison_alpha"] == pytest.approx(analysis["alpha"] / 2)
    assert analysis["srm"]["units"] == expected_units
    assert {arm: f["requests"] for arm, f in analysis["arms"].items()} == {
        arm: 2 * n for arm, n in expected_units.items()
    }

    # The report names the arms and what each serves.
    report = _dualserve(stack, "experiment", "report", "abn", "--out", str(tmp_path))
    assert report.returncode == 0, report.stdout + report.stderr
    text = (tmp_path / "abn" / "report.md").read_text()
    assert "control tf-v1 (tensorflow v1); candidates tf-v2 (tensorflow v2), pt-v2 (pytorch v2)" in text  # fmt: skip

    # A rollout of one candidate, pt-v2, from the same arms; promoting is refused until
    # it reached 100%.
    ended = _admin(stack, "POST", "/admin/experiments/abn/end", json={"reason": "rollout next"})
    assert ended.status_code == 200, ended.text
    rollout = {"candidate": "pt-v2", "steps": [50, 100], "min_units_per_step": 30}
    spec = {"id": "abn-rollout", "model": MODEL, "arms": ARMS, "control": "tf-v1",
            "rollout": rollout, **RULES}  # fmt: skip
    created = _admin(stack, "POST", "/admin/experiments", json=spec)
    assert created.status_code == 201, created.text
    early = _dualserve(stack, "promote", MODEL, "pt-v2", "--reason", "too early")
    assert (
        early.returncode == 1 and "abn-rollout" in early.stdout and "still running" in early.stdout
    )
    started = time.monotonic()
    deadline = started + DEADLINE_S
    while _weights(stack).get("pt-v2") != 100:
        assert time.monotonic() < deadline, _admin(
            stack, "GET", "/admin/experiments/abn-rollout"
        ).text
        _traffic(stack, x, 60)
    assert _weights(stack)["tf-v2"] == 0  # the other candidate got nothing throughout
    steps = _admin(stack, "GET", "/admin/experiments/abn-rollout").json()["rollout"]
    kinds = [(e["details"]["kind"], e["details"]["share"]) for e in steps]
    assert kinds == [("advance", 50), ("advance", 100)]
    evidence = steps[1]["details"]["evidence"]  # the advance to 100%, and why
    assert evidence["decision"]["outcome"] in ("candidate_non_inferior", "candidate_superior")
    assert evidence["units"]["pt-v2"] > 0 and evidence["units"]["tf-v2"] == 0
    promoted = _dualserve(stack, "promote", MODEL, "pt-v2", "--reason", "rolled out")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "ended experiment abn-rollout" in promoted.stdout
    status = _admin(stack, "GET", "/admin/experiments/abn-rollout").json()["status"]
    assert status == "ended"
    policy = _admin(stack, "GET", f"/admin/models/{MODEL}/policy").json()
    assert (policy["source"], policy["effective"]["primary"]) == ("promoted", "pt-v2")
    with httpx.Client(timeout=60) as client:
        after = {
            (r.headers["X-Backend"], r.headers["X-Model-Version"])
            for r in (_predict(client, rest, x, f"after-{i}") for i in range(20))
        }
    assert after == {("pytorch", "2")}
    listed = _dualserve(stack, "events", MODEL, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (event,) = json.loads(listed.stdout)
    assert (event["action"], event["arm"], event["details"]["ended_experiment"]) == (
        "promote", "pt-v2", "abn-rollout",
    )  # fmt: skip
    assert event["details"]["forced"] is False
    figures(f"three arms: units {expected_units}; rollout of pt-v2 to 100% in"
            f" {time.monotonic() - started:.0f} s")  # fmt: skip
