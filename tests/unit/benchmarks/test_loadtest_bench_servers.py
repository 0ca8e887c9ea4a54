"""The server benchmarks start what they say: granian's own CLI reads the bench's command
as ASGI, one worker, uvloop, the runtime asked for; the gRPC floor answers with a reply a
TF Serving client parses; the granian floor factory builds the floor proxy."""

from __future__ import annotations

import pytest
from granian.cli import cli

from benchmarks.floor_proxy import FloorProxy
from benchmarks.grpc_floor import REPLY
from benchmarks.servers import UPSTREAM_ENV, Granian, floor_app
from gateway._proto.tfserving import PredictResponse


@pytest.mark.parametrize(("text", "mode", "threads"), [("mt1", "mt", 1), ("st2", "st", 2)])
def test_granian_command_is_what_granians_cli_reads(text: str, mode: str, threads: int) -> None:
    command = Granian.parse(text).command("gateway.processes.workers:worker_app", 8123)
    assert command[1:3] == ["-m", "granian"]
    params = cli.make_context("granian", command[3:]).params
    assert params["app"] == "gateway.processes.workers:worker_app"
    assert params["factory"] is True
    assert params["interface"].value == "asgi"  # lifespan runs: the gRPC ingress starts
    assert params["loop"].value == "uvloop"
    assert params["workers"] == 1
    assert params["runtime_mode"].value == mode
    assert params["runtime_threads"] == threads
    assert params["port"] == 8123


def test_granian_label_names_the_runtime() -> None:
    assert Granian.parse("mt2").label == "granian-mt2"


def test_grpc_floor_reply_parses_as_a_predict_response() -> None:
    reply = PredictResponse.FromString(REPLY)
    assert reply.model_spec.name == "digits-mlp"
    assert reply.model_spec.version.value == 1
    probabilities = reply.outputs["probabilities"]
    assert [d.size for d in probabilities.tensor_shape.dim] == [10]
    assert len(probabilities.tensor_content) == 10 * 4  # float32


def test_granian_floor_factory_reads_its_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPSTREAM_ENV, "http://127.0.0.1:9/")
    app = floor_app()
    assert isinstance(app, FloorProxy)
    assert app.upstream == "http://127.0.0.1:9"
