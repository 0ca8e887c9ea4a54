"""The catalog follows the backends: `latest` is the newest version both serve, versions
land and leave with what the backends say, a backend's not-found makes the router look
again, readiness is what the backends serve."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.catalog import Catalog
from gateway.control.catalog_follower import CatalogFollower, TFServingVersions, TorchServeVersions
from gateway.core.errors import NotFound
from gateway.core.types import Framework, InferRequest
from gateway.routing.policy_store import Route
from gateway.routing.router import Router
from gateway.settings import ModelPolicy
from gateway.upstreams.torchserve_token import TokenSource
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

X = np.array([[0.0, 5.0, 1.0, 2.0]], dtype=np.float32)


class Served:
    """A backend's status API stand-in: the versions it serves, or None (no answer)."""

    def __init__(self, framework: Framework, versions: set[int] | None) -> None:
        self.framework = framework
        self.now = versions
        self.asked = 0

    async def versions(self, model: str) -> frozenset[int] | None:
        self.asked += 1
        return None if self.now is None else frozenset(self.now)

    async def aclose(self) -> None:
        pass


class VersionedUpstream(FakeUpstream):
    """A fake backend that answers only the versions it serves (404 otherwise)."""

    def __init__(self, framework: Framework, served: Served) -> None:
        super().__init__(framework)
        self.served = served
        self.versions_asked: list[int | None] = []

    async def infer(self, request: InferRequest, timeout: float):  # type: ignore[no-untyped-def]
        self.versions_asked.append(request.version)
        if request.version not in (self.served.now or set()):
            raise NotFound(f"{self.framework}: version {request.version} not found")
        return await super().infer(request, timeout)


class Fixed:
    def __init__(self, policy: ModelPolicy) -> None:
        self.policy = policy

    def route(self, model: str) -> Route:
        return Route("configured", self.policy)


def _follow(tmp_path: Path, tf: set[int] | None, torch: set[int] | None, versions=(1, 2, 3)):  # type: ignore[no-untyped-def]
    store = make_store(tmp_path, versions)
    catalog = Catalog.from_store(store)
    sources = [Served("tensorflow", tf), Served("pytorch", torch)]
    times = iter(range(100, 200))
    follower = CatalogFollower(catalog, store, sources, poll_s=3600, clock=lambda: next(times))
    return catalog, follower, sources


def test_latest_is_the_newest_version_both_frameworks_serve(tmp_path: Path) -> None:
    catalog, follower, _ = _follow(tmp_path, tf={1, 2, 3}, torch={1, 2})
    asyncio.run(follower.look_all())
    info = catalog.get("toy")
    assert info.versions == {
        1: ("tensorflow", "pytorch"),
        2: ("tensorflow", "pytorch"),
        3: ("tensorflow",),
    }
    assert catalog.routed("toy") == 2 and info.resolve_version(None, None) == 2
    # A client pinned to TF still gets the common latest; explicit versions as asked.
    assert info.resolve_version(None, None, "tensorflow") == 2
    assert info.resolve_version(3, None) == 3
    assert catalog.served("toy") == {"tensorflow": (1, 2, 3), "pytorch": (1, 2)}


def test_without_a_common_version_each_pinned_arm_gets_its_own_newest(tmp_path: Path) -> None:
    catalog, follower, _ = _follow(tmp_path, tf={3}, torch={2})
    asyncio.run(follower.look_all())
    info = catalog.get("toy")
    assert info.latest == 3  # the newest any arm serves
    assert info.resolve_version(None, None, "pytorch") == 2
    assert info.resolve_version(None, None, "tensorflow") == 3


def test_a_version_lands_and_leaves_with_what_the_backends_serve(tmp_path: Path) -> None:
    catalog, follower, (tf, torch) = _follow(tmp_path, tf={1, 2}, torch={1})

    async def scenario() -> list[int | None]:
        seen = []
        await follower.look_all()
        seen.append(catalog.routed("toy"))  # 2 is on TF only: 1 stays routed
        torch.now = {1, 2}
        await follower.look_all()
        seen.append(catalog.routed("toy"))  # both serve 2: it is routed
        tf.now, torch.now = {2}, {2}
        await follower.look_all()
        seen.append(catalog.routed("toy"))
        return seen

    assert asyncio.run(scenario()) == [1, 2, 2]
    assert 1 not in catalog.get("toy").versions  # left: an explicit v1 is the client's 404
    with pytest.raises(NotFound):
        catalog.get("toy").resolve_version(1, None)
    assert catalog.since("toy") == 101  # the look at which 2 became routed


def test_a_backend_that_does_not_answer_keeps_its_last_picture(tmp_path: Path) -> None:
    catalog, follower, (tf, _) = _follow(tmp_path, tf={1, 2}, torch={1, 2})
    asyncio.run(follower.look_all())
    tf.now = None
    asyncio.run(follower.look_all())
    assert catalog.served("toy")["tensorflow"] == (1, 2)


def test_a_backend_never_heard_from_is_believed_as_exported(tmp_path: Path) -> None:
    catalog, follower, _ = _follow(tmp_path, tf=None, torch={1})
    asyncio.run(follower.look_all())
    assert catalog.served("toy") == {"tensorflow": (1, 2, 3), "pytorch": (1,)}
    assert catalog.routed("toy") == 1


def test_a_new_manifest_version_is_read_when_the_file_changes(tmp_path: Path) -> None:
    catalog, follower, _ = _follow(tmp_path, tf={1, 2}, torch={1, 2}, versions=(1,))
    asyncio.run(follower.look_all())
    assert catalog.routed("toy") == 1  # 2 is served but the manifest does not know it yet
    make_store(tmp_path, (1, 2))
    asyncio.run(follower.look_all())
    assert catalog.routed("toy") == 2


def test_an_arm_that_serves_no_version_is_not_ready(tmp_path: Path) -> None:
    catalog, follower, (tf, torch) = _follow(tmp_path, tf={1}, torch=set())
    store = tmp_path
    upstreams = {
        "tensorflow": VersionedUpstream("tensorflow", tf),
        "pytorch": VersionedUpstream("pytorch", torch),
    }
    router = Router(catalog, upstreams, settings_for(store), Fixed(ModelPolicy()), lambda o: None)  # type: ignore[arg-type]
    asyncio.run(follower.look_all())
    assert asyncio.run(router.ready("toy")) == {"tensorflow": True, "pytorch": False}


def test_a_backend_not_found_makes_the_router_look_again_and_answer_unversioned(
    tmp_path: Path,
) -> None:
    """TF swaps 1 for 2 and TorchServe has both between two polls: the unversioned
    request that met the 404 is answered from version 2; a request naming 1 now goes to
    the arm that still serves it."""
    catalog, follower, (tf, torch) = _follow(tmp_path, tf={1}, torch={1})
    upstreams = {
        "tensorflow": VersionedUpstream("tensorflow", tf),
        "pytorch": VersionedUpstream("pytorch", torch),
    }
    policy = ModelPolicy(mode="pinned", primary="tensorflow", failover=False)
    router = Router(catalog, upstreams, settings_for(tmp_path), Fixed(policy), lambda o: None)  # type: ignore[arg-type]

    async def scenario() -> None:
        await follower.start()
        try:
            tf.now, torch.now = {2}, {1, 2}  # the backends moved; the catalog has not looked
            answer = await router.infer(InferRequest(model="toy", inputs={"input": X}))
            assert (answer.backend, answer.version) == ("tensorflow", 2)
            older = await router.infer(InferRequest(model="toy", version=1, inputs={"input": X}))
            assert (older.backend, older.version) == ("pytorch", 1)
        finally:
            await follower.aclose()

    asyncio.run(scenario())
    assert upstreams["tensorflow"].versions_asked == [1, 2]


def test_concurrent_refreshes_share_one_look(tmp_path: Path) -> None:
    catalog, follower, (tf, torch) = _follow(tmp_path, tf={1}, torch={1})

    async def scenario() -> None:
        catalog.attach(follower.look)
        await asyncio.gather(*(catalog.refresh("toy") for _ in range(10)))

    asyncio.run(scenario())
    assert tf.asked == 1 and torch.asked == 1


def _status_client(handler):  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), timeout=1)


def test_tf_serving_status_counts_only_available_versions() -> None:
    body = {"model_version_status": [
        {"version": "3", "state": "LOADING"}, {"version": "2", "state": "AVAILABLE"},
        {"version": "1", "state": "END"},
    ]}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models/toy"
        return httpx.Response(200, json=body)

    source = TFServingVersions(["http://tf"])
    source._client = _status_client(handler)
    assert asyncio.run(source.versions("toy")) == {2}


def test_torchserve_status_counts_versions_with_a_ready_worker(tmp_path: Path) -> None:
    keys = tmp_path / "key_file.json"
    keys.write_text(json.dumps({"management": {"key": "m-key"}, "inference": {"key": "i-key"}}))
    body = [
        {"modelVersion": "1", "workers": [{"status": "READY"}]},
        {"modelVersion": "2", "workers": [{"status": "UNLOADING"}]},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/models/toy/all"
        assert request.headers["Authorization"] == "Bearer m-key"  # the management key
        return httpx.Response(200, json=body)

    source = TorchServeVersions(["http://ts"], TokenSource(None, keys, kind="management"))
    source._client = _status_client(handler)
    assert asyncio.run(source.versions("toy")) == {1}


def test_replicas_serve_what_every_answering_replica_serves() -> None:
    answers = {"a": ["1", "2"], "b": ["2"]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "c":
            raise httpx.ConnectError("refused")
        statuses = [{"version": v, "state": "AVAILABLE"} for v in answers[request.url.host]]
        return httpx.Response(200, json={"model_version_status": statuses})

    source = TFServingVersions(["http://a", "http://b", "http://c"])
    source._client = _status_client(handler)
    assert asyncio.run(source.versions("toy")) == {2}


def test_a_server_an_arm_names_is_followed_on_its_own(tmp_path: Path) -> None:
    """Beside TorchServe (pytorch's server), the OIP server's versions decide where an arm
    naming `oip` may go (`ModelInfo.serves_on`); the framework's picture is TorchServe's."""
    store = make_store(tmp_path, (1, 2))
    catalog = Catalog.from_store(store)
    oip = Served("pytorch", {1})
    sources = [Served("tensorflow", {1, 2}), Served("pytorch", {1, 2})]
    follower = CatalogFollower(catalog, store, sources, poll_s=3600, server_sources=[("oip", oip)])
    asyncio.run(follower.look_all())
    info = catalog.get("toy")
    assert info.versions == {1: ("tensorflow", "pytorch"), 2: ("tensorflow", "pytorch")}
    assert [info.serves_on("pytorch", "oip", v) for v in (1, 2)] == [True, False]
    assert info.serves_on("pytorch", "torchserve", 2)  # not followed apart: as pytorch
    oip.now = {1, 2}
    assert asyncio.run(follower.look_all())  # a change on the OIP server alone is a change
    assert catalog.get("toy").serves_on("pytorch", "oip", 2)


def test_the_follower_follows_the_servers_arms_may_name(tmp_path: Path) -> None:
    from gateway.control.catalog_follower import OipVersions, server_sources_for

    oip = {"rest": ["127.0.0.1:8"], "grpc": ["127.0.0.1:9"]}
    assert server_sources_for(settings_for(tmp_path)) == []  # no OIP server configured
    [(server, source)] = server_sources_for(settings_for(tmp_path, oip=oip))
    assert server == "oip" and isinstance(source, OipVersions)
    flipped = settings_for(tmp_path, oip=oip, servers={"pytorch": "oip"},
                           pytorch={"management": ["127.0.0.1:7"], "rest": ["127.0.0.1:6"]})  # fmt: skip
    [(server, source)] = server_sources_for(flipped)
    assert server == "torchserve" and isinstance(source, TorchServeVersions)
