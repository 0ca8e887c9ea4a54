"""The transport-free data plane and the edge, in process with fakes of the router."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.catalog import Catalog
from gateway.core.errors import BadRequest, NotFound, UpstreamTimeout
from gateway.core.version import parse_version
from gateway.dataplane import DataPlane
from gateway.edge.admission import Admission
from gateway.edge.boundary import INTERNAL_MESSAGE, Edge, InternalError
from gateway.edge.drain import Drain
from gateway.telemetry.metrics import GatewayMetrics
from tests.unit.gateway.gateway_fakes import make_store


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeRouter:
    """Each model's arms' readiness, as told; records which models were asked."""

    def __init__(self, catalog: Catalog, ready: dict[str, dict[str, bool]]) -> None:
        self.catalog = catalog
        self.answers = ready
        self.asked: list[str] = []

    async def ready(self, model: str) -> dict[str, bool]:
        self.asked.append(model)
        return self.answers[model]


def _plane(tmp_path: Path, ready: dict[str, dict[str, bool]]) -> tuple[DataPlane, FakeRouter]:
    router = FakeRouter(_two_models(tmp_path), ready)
    return DataPlane(router, GatewayMetrics(), Drain()), router  # type: ignore[arg-type]


def _two_models(tmp_path: Path) -> Catalog:
    toy = Catalog.from_store(make_store(tmp_path)).get("toy")
    return Catalog({"other": replace(toy, name="other"), "toy": toy})


@pytest.mark.parametrize(("text", "number"), [(None, None), ("", None), ("1", 1), ("12", 12)])
def test_version_text_names_a_positive_integer_or_none(text: str | None, number: int) -> None:
    assert parse_version(text) == number


@pytest.mark.parametrize("text", ["0", "-1", "x", "1.5", " 1"])
def test_a_malformed_version_is_a_bad_request_naming_it(text: str) -> None:
    with pytest.raises(BadRequest) as error:
        parse_version(text)
    assert error.value.message == f"version must be a positive integer, got '{text}'"


@pytest.mark.anyio
async def test_readiness_reports_every_model_and_ready_asks_only_what_it_needs(
    tmp_path: Path,
) -> None:
    arms = {"other": {"tensorflow": False, "pytorch": False}, "toy": {"tensorflow": True}}
    plane, router = _plane(tmp_path, arms)
    report = await plane.readiness()
    assert (report.ready, report.draining, report.models) == (False, False, arms)
    router.asked.clear()
    assert await plane.ready() is False
    assert router.asked == ["other"]  # the first model without a ready arm decides
    arms["other"]["pytorch"] = True
    assert await plane.ready() is True
    plane.drain.begin()
    router.asked.clear()
    assert await plane.ready() is False and router.asked == []  # draining: nothing asked
    assert (await plane.readiness()).ready is False


@pytest.mark.anyio
async def test_model_ready_and_metadata_check_the_model_before_its_version(
    tmp_path: Path,
) -> None:
    plane, _ = _plane(tmp_path, {"toy": {"tensorflow": False, "pytorch": True}})
    assert await plane.model_ready("toy", "2") is True
    with pytest.raises(NotFound):
        plane.model_metadata("nope", "not-a-number")  # 404 whatever the version says
    with pytest.raises(BadRequest):
        plane.model_metadata("toy", "not-a-number")
    with pytest.raises(NotFound):
        await plane.model_ready("toy", 3)
    metadata = plane.model_metadata("toy")
    assert (metadata.version, metadata.versions) == (2, (1, 2))  # the latest, all ascending
    assert plane.model_metadata("toy", "1").version == 1
    assert plane.model_metadata("toy").oip() == {  # KServe v2 "Model Metadata Response"
        "name": "toy",
        "versions": ["1", "2"],
        "platform": "dualserve (tensorflow | pytorch)",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "class", "datatype": "INT64", "shape": [-1]},
        ],
    }


def _count(metrics: GatewayMetrics, **labels: str) -> float:
    value = metrics.registry.get_sample_value("dualserve_requests_total", labels)
    return 0.0 if value is None else value


def test_the_edge_shapes_a_bug_and_counts_errors_under_known_models_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = GatewayMetrics()
    edge = Edge(Admission(1), metrics, lambda: ["toy"])
    bug = edge.error(KeyError("secret detail"), "v2-rest", "toy", "on /v2/models/toy/infer")
    assert isinstance(bug, InternalError) and bug.message == INTERNAL_MESSAGE
    (logged,) = caplog.records  # the traceback goes to the log, not to the client
    assert logged.getMessage() == "unexpected error on /v2/models/toy/infer" and logged.exc_info
    assert (int(bug.status), bug.grpc_code.name) == (500, "INTERNAL")
    timeout = UpstreamTimeout("pytorch", "no answer")
    assert edge.error(timeout, "v2-rest", "typo", "on /x") is timeout
    assert edge.error(NotFound("unknown"), None, "toy", "on /admin") is not None  # not counted
    labels = {"protocol": "v2-rest"}
    assert _count(metrics, model="toy", arm="none", status="500", **labels) == 1
    assert _count(metrics, model="unknown", arm="pytorch", status="504", **labels) == 1
    assert _count(metrics, model="toy", arm="none", status="404", **labels) == 0
