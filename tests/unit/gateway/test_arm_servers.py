"""Arms name their server (issue 29): two pytorch arms, one on TorchServe and one on the
OIP server, each call their own upstream through their own breaker; failover from either
goes to tensorflow at the same version; a bad server is refused naming the arm."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.catalog import Catalog
from gateway.core.arms import Arm
from gateway.core.errors import NotFound, UpstreamUnavailable
from gateway.core.outcome import CallOutcome
from gateway.core.types import InferRequest
from gateway.routing.policy_store import Route
from gateway.routing.router import Router
from gateway.settings import ModelPolicy
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

X = np.array([[0.0, 5.0, 1.0, 2.0]], dtype=np.float32)
ARMS = {
    "torch-ts": {"framework": "pytorch", "server": "torchserve"},
    "torch-pt2": {"framework": "pytorch", "server": "oip"},
}


class Fixed:
    def __init__(self, policy: ModelPolicy) -> None:
        self.fixed = Route("configured", policy)

    def route(self, model: str) -> Route:
        return self.fixed


def _router(
    tmp_path: Path,
    policy: ModelPolicy,
    with_oip: bool = True,
    pt2: frozenset[int] = frozenset({1, 2}),
) -> tuple[Router, dict[str, FakeUpstream], list[CallOutcome]]:
    """The toy store (versions 1 and 2), its `.pt2` exports served for `pt2`."""
    store = make_store(tmp_path)
    catalog = Catalog.from_store(store)
    assert catalog.get("toy").on_servers == {("pytorch", "oip"): frozenset()}  # no .pt2 there
    catalog.update(replace(catalog.get("toy"), on_servers={("pytorch", "oip"): pt2}), 0.0)
    fakes = {name: FakeUpstream(fw) for name, fw in
             (("tensorflow", "tensorflow"), ("pytorch", "pytorch"), ("oip", "pytorch"))}  # fmt: skip
    outcomes: list[CallOutcome] = []
    servers = {("pytorch", "oip"): fakes["oip"]} if with_oip else {}
    router = Router(
        catalog,
        {"tensorflow": fakes["tensorflow"], "pytorch": fakes["pytorch"]},  # type: ignore[dict-item]
        settings_for(store), Fixed(policy), outcomes.append,  # type: ignore[arg-type]
        server_upstreams=servers,  # type: ignore[dict-item]
    )  # fmt: skip
    return router, fakes, outcomes


def _pinned(arm: str) -> InferRequest:
    return InferRequest(model="toy", inputs={"input": X}, pinned_arm=arm)


@pytest.mark.parametrize(
    ("framework", "server"), [("tensorflow", "oip"), ("tensorflow", "torchserve"),
                              ("pytorch", "tfserving")],
)  # fmt: skip
def test_a_server_that_does_not_serve_the_framework_is_refused_naming_the_arm(
    framework: str, server: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelPolicy.model_validate(
            {"arms": {"odd-arm": {"framework": framework, "server": server}}}
        )
    text = str(caught.value)
    assert "odd-arm" in text and f"server {server} does not serve {framework}" in text


def test_an_arm_without_a_server_keeps_its_old_form() -> None:
    arm = Arm(framework="pytorch", version=2)
    assert arm.server is None and arm.model_dump() == {
        "framework": "pytorch", "version": 2, "server": None,
    }  # fmt: skip
    assert Arm(framework="pytorch", server="oip").label() == "pytorch on oip latest"


@pytest.mark.parametrize(("arm", "called"), [("torch-ts", "pytorch"), ("torch-pt2", "oip")])
def test_each_pytorch_arm_calls_its_own_server(tmp_path: Path, arm: str, called: str) -> None:
    router, fakes, outcomes = _router(tmp_path, ModelPolicy(arms=ARMS, primary="torch-ts"))
    response = asyncio.run(router.infer(_pinned(arm)))
    assert response.backend == "pytorch"
    assert {name: len(f.calls) for name, f in fakes.items()} == {
        "tensorflow": 0, "pytorch": int(called == "pytorch"), "oip": int(called == "oip"),
    }  # fmt: skip
    (outcome,) = outcomes
    assert (outcome.arm, outcome.arm_name, outcome.status) == ("pytorch", arm, 200)


def test_each_server_has_its_own_breaker(tmp_path: Path) -> None:
    policy = ModelPolicy(mode="pinned", arms=ARMS, primary="torch-pt2", failover=False)
    router, fakes, _ = _router(tmp_path, policy)
    fakes["oip"].fail_with = UpstreamUnavailable("oip", "down")
    for _ in range(router.lanes[("pytorch", "oip")].breaker._settings.failure_threshold):
        with pytest.raises(UpstreamUnavailable):
            asyncio.run(router.infer(InferRequest(model="toy", inputs={"input": X})))
    assert not router.lanes[("pytorch", "oip")].breaker.accepting
    assert router.breakers["pytorch"].accepting  # TorchServe's arm is untouched
    asyncio.run(router.infer(_pinned("torch-ts")))
    assert len(fakes["pytorch"].calls) == 1


def test_failover_from_the_oip_arm_goes_to_tensorflow(tmp_path: Path) -> None:
    router, fakes, outcomes = _router(
        tmp_path, ModelPolicy(mode="pinned", arms=ARMS, primary="torch-pt2")
    )
    fakes["oip"].fail_with = UpstreamUnavailable("oip", "down")
    response = asyncio.run(router.infer(InferRequest(model="toy", inputs={"input": X})))
    assert response.backend == "tensorflow" and response.failover
    assert [o.arm for o in outcomes] == ["pytorch", "tensorflow"]
    assert fakes["pytorch"].calls == []  # not TorchServe: the other framework


def test_an_arm_on_a_server_without_a_client_is_a_503_naming_it(tmp_path: Path) -> None:
    router, _, _ = _router(
        tmp_path, ModelPolicy(mode="pinned", arms=ARMS, primary="torch-pt2"), with_oip=False
    )
    with pytest.raises(UpstreamUnavailable, match="pytorch on oip: the gateway has no oip client"):
        asyncio.run(router.infer(_pinned("torch-pt2")))


def test_an_arm_is_routed_only_where_its_server_serves_the_version(tmp_path: Path) -> None:
    """Version 2 (latest) has no `.pt2` on the OIP server: pinned, 404 naming the server;
    routed, the arm is skipped as when its framework lacks the build (tensorflow)."""
    policy = ModelPolicy(mode="pinned", arms=ARMS, primary="torch-pt2")
    router, fakes, _ = _router(tmp_path, policy, pt2=frozenset({1}))
    with pytest.raises(NotFound, match="toy version 2 has no pytorch build on oip"):
        asyncio.run(router.infer(_pinned("torch-pt2")))
    response = asyncio.run(router.infer(InferRequest(model="toy", inputs={"input": X})))
    assert response.backend == "tensorflow" and fakes["oip"].calls == []
    one = InferRequest(model="toy", inputs={"input": X}, version=1, pinned_arm="torch-pt2")
    assert asyncio.run(router.infer(one)).backend == "pytorch" and len(fakes["oip"].calls) == 1


def test_the_policy_api_refuses_a_bad_server_with_a_400_naming_the_arm(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    store = make_store(tmp_path / "store")
    settings = settings_for(store, experiments={"data_dir": str(tmp_path / "data")})
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    admin = {"Authorization": "Bearer admin-secret"}
    bad = {"arms": {"tf-oip": {"framework": "tensorflow", "server": "oip"}}, "primary": "tf-oip"}
    with TestClient(create_app(settings, upstreams)) as client:  # type: ignore[arg-type]
        reply = client.put("/admin/models/toy/policy", headers=admin,
                           json={"policy": {"mode": "pinned", **bad}, "reason": "t"})  # fmt: skip
        assert reply.status_code == 400, reply.text
        assert "tf-oip" in reply.json()["error"] and "does not serve tensorflow" in reply.text
        good = {"mode": "pinned", "arms": ARMS, "primary": "torch-ts",
                "weights": {"torch-ts": 50, "torch-pt2": 50}}  # fmt: skip
        reply = client.put("/admin/models/toy/policy", headers=admin,
                           json={"policy": good, "reason": "t"})  # fmt: skip
        assert reply.status_code == 200, reply.text
        body = {"instances": [[1.0, 0.0, 0.0, 0.0]]}
        pinned = client.post("/v1/models/toy:predict", json=body, headers={"X-Arm": "torch-pt2"})
        assert pinned.status_code in (404, 503), pinned.text  # no .pt2 in the toy store
        assert "oip" in pinned.json()["error"]


def test_a_failover_to_pytorch_is_logged_as_the_arm_on_its_configured_server(
    tmp_path: Path,
) -> None:
    """TorchServe is pytorch's configured server: a failover from tensorflow calls it, so
    it is logged as torch-ts, never torch-pt2 (listed first here on purpose)."""
    arms = {"tf": {"framework": "tensorflow"}, "torch-pt2": ARMS["torch-pt2"],
            "torch-ts": ARMS["torch-ts"]}  # fmt: skip
    router, fakes, outcomes = _router(tmp_path, ModelPolicy(mode="pinned", arms=arms, primary="tf"))
    fakes["tensorflow"].fail_with = UpstreamUnavailable("tensorflow", "down")
    response = asyncio.run(router.infer(InferRequest(model="toy", inputs={"input": X})))
    assert response.failover and len(fakes["pytorch"].calls) == 1 and fakes["oip"].calls == []
    assert [(o.arm, o.arm_name) for o in outcomes] == [
        ("tensorflow", "tf"),
        ("pytorch", "torch-ts"),
    ]
