"""The serving core with fakes: error table, batching, model manager, metrics page."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backends.tfserving.server import errors
from backends.tfserving.aux_config import BatchingParameters
from backends.tfserving.server.batching import QUEUE_FULL, BatchScheduler, merge_inputs, split_outputs
from backends.tfserving.server.errors import InvalidArgument, NotFound, ServingError, Unavailable
from backends.tfserving.server.manager import ModelManager, versions_on_disk
from backends.tfserving.server.metrics import ServerMetrics
from backends.tfserving.model_config import ModelConfig, VersionPolicy
from backends.tfserving.server.signature import ModelSpec

ERROR_TABLE = {
    errors.InvalidArgument: (HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT"),
    errors.FailedPrecondition: (HTTPStatus.BAD_REQUEST, "FAILED_PRECONDITION"),
    errors.NotFound: (HTTPStatus.NOT_FOUND, "NOT_FOUND"),
    errors.Unavailable: (HTTPStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE"),
    errors.Unimplemented: (HTTPStatus.NOT_IMPLEMENTED, "UNIMPLEMENTED"),
    errors.DeadlineExceeded: (HTTPStatus.GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
    errors.InternalError: (HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL"),
    errors.PayloadTooLarge: (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RESOURCE_EXHAUSTED"),
    errors.UnsupportedMediaType: (HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "INVALID_ARGUMENT"),
}


def test_every_error_class_is_in_the_table() -> None:
    assert set(ServingError.__subclasses__()) == set(ERROR_TABLE)


@pytest.mark.parametrize(("kind", "pair"), ERROR_TABLE.items())
def test_error_carries_http_status_and_a_real_grpc_code(
    kind: type[ServingError], pair: tuple
) -> None:
    error = kind("why")
    assert (error.http_status, error.grpc_code) == pair
    assert grpc.StatusCode[error.grpc_code].name == error.grpc_code
    assert error.message == "why"


def test_servable_not_found_texts() -> None:
    assert (
        errors.servable_not_found("m", 9).message
        == "Servable not found for request: Specific(m, 9)"
    )
    assert (
        errors.servable_not_found("m", None).message == "Servable not found for request: Latest(m)"
    )


# ---- batching ----


def test_merge_and_split_are_inverse() -> None:
    parts = [{"x": np.full((n, 2), n, np.float32)} for n in (1, 3, 2)]
    merged = merge_inputs(parts)
    assert merged["x"].shape == (6, 2)
    back = split_outputs(merged, [1, 3, 2])
    for part, original in zip(back, parts, strict=True):
        np.testing.assert_array_equal(part["x"], original["x"])


def doubler(calls: list[int]) -> Any:
    def run(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(batch["x"]))
        return {"y": batch["x"] * 2}

    return run


def test_concurrent_tasks_are_merged_and_each_gets_its_own_rows() -> None:
    seen: list[int] = []

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = BatchScheduler(
            BatchingParameters(8, 50_000, 10, 1), lambda m, size, waits: seen.append(size)
        )
        calls: list[int] = []
        run = doubler(calls)
        tasks = [
            batcher.submit("k", "m", run, {"x": np.full((1, 2), i, np.float32)}, 1)
            for i in range(8)
        ]
        results = await asyncio.gather(*tasks)
        batcher.close()
        assert calls == [8]  # full batch closes at once, without waiting for the timeout
        return results

    results = asyncio.run(scenario())
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], [[2 * i, 2 * i]])
    assert seen == [8]


def test_timeout_closes_a_partial_batch_and_size_limit_splits_batches() -> None:
    async def scenario() -> list[int]:
        batcher = BatchScheduler(BatchingParameters(4, 1000, 10, 1))
        calls: list[int] = []
        run = doubler(calls)
        sizes = (3, 2, 1)  # 3 + 2 > 4: the second task opens a new batch
        await asyncio.gather(
            *(batcher.submit("k", "m", run, {"x": np.zeros((n, 1))}, n) for n in sizes)
        )
        batcher.close()
        return calls

    assert sorted(asyncio.run(scenario())) == [3, 3]


def test_task_larger_than_max_batch_size_is_refused_like_tf_serving() -> None:
    async def scenario() -> None:
        batcher = BatchScheduler(BatchingParameters(4, 0, 10, 1))
        await batcher.submit("k", "m", doubler([]), {"x": np.zeros((5, 1))}, 5)

    with pytest.raises(
        InvalidArgument, match="Task size 5 is larger than maximum input batch size 4"
    ):
        asyncio.run(scenario())


def test_large_batch_splitting_runs_big_requests_in_execution_batches() -> None:
    async def scenario() -> tuple[list[int], dict[str, np.ndarray]]:
        params = BatchingParameters(
            100, 0, 10, 1, enable_large_batch_splitting=True, max_execution_batch_size=4
        )
        batcher = BatchScheduler(params)
        calls: list[int] = []
        x = np.arange(10, dtype=np.float64).reshape(10, 1)
        result = await batcher.submit("k", "m", doubler(calls), {"x": x}, 10)
        batcher.close()
        return calls, result

    calls, result = asyncio.run(scenario())
    assert max(calls) <= 4 and sum(calls) == 10
    np.testing.assert_array_equal(result["y"][:, 0], 2 * np.arange(10))


def test_full_queue_answers_unavailable() -> None:
    release = threading.Event()

    def slow(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        release.wait(5)
        return {"y": batch["x"]}

    async def scenario() -> list[Any]:
        batcher = BatchScheduler(BatchingParameters(1, 0, 2, 1))
        tasks = [
            asyncio.ensure_future(batcher.submit("k", "m", slow, {"x": np.zeros((1, 1))}, 1))
            for _ in range(5)
        ]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        batcher.close()
        return results

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, Unavailable)]
    assert refused and all(r.message == QUEUE_FULL for r in refused)
    assert any(isinstance(r, dict) for r in results)


def test_a_failing_batch_fails_every_task_in_it() -> None:
    def broken(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise errors.InternalError("kernel exploded")

    async def scenario() -> list[Any]:
        batcher = BatchScheduler(BatchingParameters(4, 10_000, 10, 1))
        tasks = [batcher.submit("k", "m", broken, {"x": np.zeros((1, 1))}, 1) for _ in range(2)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, errors.InternalError) for r in results)


# ---- model manager ----


class FakeServable:
    def __init__(self, name: str, version: int) -> None:
        self.name, self.version, self.signatures = name, version, {}

    def run(self, signature: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Any:
        return {}

    def signature_def_map(self) -> Any:
        return None

    def metadata_json(self) -> dict[str, Any]:
        return {}


def make_manager(
    tmp_path: Path, versions: Sequence[int], **config: Any
) -> tuple[ModelManager, list]:
    for v in versions:
        (tmp_path / str(v)).mkdir()
    (tmp_path / "tmp-copy").mkdir()  # non-numeric: ignored
    loads: list[int] = []
    broken: set[int] = config.pop("broken", set())

    def loader(name: str, version: int, path: Path) -> FakeServable:
        loads.append(version)
        if version in broken:
            raise RuntimeError("bad SavedModel")
        return FakeServable(name, version)

    manager = ModelManager([ModelConfig("m", tmp_path, **config)], loader)
    manager.poll_once()
    return manager, loads


def test_versions_on_disk_ignores_non_numeric_and_missing(tmp_path: Path) -> None:
    for name in ("3", "1", "tmp", "0"):
        (tmp_path / name).mkdir()
    assert versions_on_disk(tmp_path) == [1, 3]
    assert versions_on_disk(tmp_path / "missing") == []


def test_latest_policy_serves_the_newest_and_swaps_on_new_versions(tmp_path: Path) -> None:
    manager, loads = make_manager(tmp_path, [1, 2])
    assert manager.resolve(ModelSpec("m")).version == 2
    assert loads == [2]
    (tmp_path / "3").mkdir()
    manager.poll_once()
    assert manager.available("m") == [3]
    assert [s.state for s in manager.status("m")] == ["AVAILABLE", "END"]
    with pytest.raises(NotFound, match=r"Specific\(m, 2\)"):
        manager.resolve(ModelSpec("m", version=2))


def test_removing_the_latest_version_brings_the_previous_one_back(tmp_path: Path) -> None:
    manager, _ = make_manager(tmp_path, [1, 2])
    (tmp_path / "2").rmdir()
    manager.poll_once()
    assert manager.resolve(ModelSpec("m")).version == 1


def test_a_broken_new_version_keeps_the_old_one_serving(tmp_path: Path) -> None:
    manager, _ = make_manager(tmp_path, [1], broken={2})
    (tmp_path / "2").mkdir()
    manager.poll_once()
    assert manager.resolve(ModelSpec("m")).version == 1
    status = manager.status("m", version=2)[0]
    assert (status.state, status.error_code) == ("END", "UNKNOWN")
    assert "bad SavedModel" in status.error_message


def test_specific_policy_labels_and_status_errors(tmp_path: Path) -> None:
    manager, _ = make_manager(
        tmp_path, [1, 2, 3], policy=VersionPolicy("specific", versions=(1, 3)), labels={"stable": 1}
    )
    assert manager.available("m") == [1, 3]
    assert manager.resolve(ModelSpec("m", label="stable")).version == 1
    with pytest.raises(InvalidArgument, match="Unrecognized servable version label: beta"):
        manager.resolve(ModelSpec("m", label="beta"))
    with pytest.raises(NotFound, match="Could not find any versions of model x"):
        manager.status("x")
    with pytest.raises(NotFound, match="Could not find version 2 of model m"):
        manager.status("m", version=2)
    with pytest.raises(NotFound, match=r"Latest\(x\)"):
        manager.resolve(ModelSpec("x"))


def test_all_policy_serves_every_version(tmp_path: Path) -> None:
    manager, loads = make_manager(tmp_path, [1, 2], policy=VersionPolicy("all"))
    assert manager.available("m") == [1, 2]
    manager.poll_once()
    assert sorted(loads) == [1, 2]  # nothing is reloaded on an unchanged disk


# ---- metrics ----


def test_metrics_page_uses_tf_serving_names_and_parses() -> None:
    metrics = ServerMetrics()
    metrics.request_count.inc("digits-mlp", "OK")
    metrics.request_count.inc("digits-mlp", "OK")
    metrics.request_latency.labels("digits-mlp", "predict", "REST").observe(250.0)
    metrics.record_batch("digits-mlp", 5, [0.001] * 5)
    text = metrics.render().decode()
    assert ':tensorflow:serving:request_count{model_name="digits-mlp",status="OK"} 2' in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    batch = families[":tensorflow:serving:batching_session:processed_batch_size"]
    assert batch.type == "histogram"
    count = [s.value for s in batch.samples if s.name.endswith("_count")]
    assert count == [1.0]
    assert families[":tensorflow:serving:request_count"].type == "counter"
