"""`dualserve up` / `status` / `down` with both real backends, and cross-framework agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from backends.process import group_members, pid_alive
from trainers.architecture import to_model_input
from trainers.data import load_dataset

REPO = Path(__file__).resolve().parents[3]


def _dualserve(
    *args: str, store: Path, run_dir: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "dualserve",
        *args,
        "--model-store",
        str(store),
        "--run-dir",
        str(run_dir),
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def stack(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("run")
    started = _dualserve("up", store=trained_store, run_dir=run_dir)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = _dualserve("status", "--json", store=trained_store, run_dir=run_dir)
        state = json.loads(status.stdout)
        yield {"state": state, "run_dir": run_dir, "store": trained_store}
    finally:
        _dualserve("down", store=trained_store, run_dir=run_dir)


def test_status_json_has_the_documented_keys(stack: dict[str, Any]) -> None:
    state = stack["state"]
    assert {"rest", "grpc"} <= set(state["tensorflow"])
    assert {"inference", "management", "grpc", "token_file"} <= set(state["pytorch"])
    assert state["tensorflow"]["rest"].startswith("http://127.0.0.1:")
    assert state["pytorch"]["grpc"].startswith("127.0.0.1:")
    assert Path(state["pytorch"]["token_file"]).is_file()
    assert (
        json.loads((stack["run_dir"] / "state.json").read_text())["tensorflow"]
        == state["tensorflow"]
    )


@pytest.mark.parametrize(("model", "arch"), [("digits-mlp", "mlp"), ("digits-cnn", "cnn")])
def test_both_frameworks_agree_on_the_test_set(
    stack: dict[str, Any], model: str, arch: str
) -> None:
    from backends.torchserve.launcher import read_token

    state = stack["state"]
    x = to_model_input(load_dataset("digits").test.x, arch)
    body = {"instances": x.tolist()}
    token = read_token(Path(state["pytorch"]["token_file"]), "inference")
    with httpx.Client(timeout=60) as client:
        tf_reply = client.post(
            f"{state['tensorflow']['rest']}/v1/models/{model}:predict", json=body
        )
        torch_reply = client.post(
            f"{state['pytorch']['inference']}/predictions/{model}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
    assert tf_reply.status_code == 200, tf_reply.text
    assert torch_reply.status_code == 200, torch_reply.text
    tf_classes = np.array([row["class"] for row in tf_reply.json()["predictions"]])
    torch_classes = np.array([row["class"] for row in torch_reply.json()["predictions"]])
    assert len(tf_classes) == len(torch_classes) == len(x)
    assert np.mean(tf_classes == torch_classes) >= 0.97


def test_up_twice_is_harmless_and_down_leaves_nothing(stack: dict[str, Any]) -> None:
    store, run_dir = stack["store"], stack["run_dir"]
    again = _dualserve("up", store=store, run_dir=run_dir)
    assert again.returncode == 0 and "already running" in again.stdout
    # the bundled OIP server runs too: the trained store holds .pt2 exports
    pids = [stack["state"][name]["pid"] for name in ("tensorflow", "pytorch", "oip")]
    assert all(pid_alive(pid) for pid in pids)
    stopped = _dualserve("down", store=store, run_dir=run_dir)
    assert (
        stopped.returncode == 0 and "tensorflow" in stopped.stdout and "pytorch" in stopped.stdout
    )
    assert "oip" in stopped.stdout
    assert not any(pid_alive(pid) for pid in pids)
    for pid in pids:  # nothing of their process groups survives either (Java, workers)
        assert group_members(pid) == []
    assert json.loads(_dualserve("status", "--json", store=store, run_dir=run_dir).stdout) == {}
    assert not (run_dir / "state.json").exists()


def test_up_without_a_model_store_says_so(tmp_path: Path) -> None:
    result = _dualserve("up", store=tmp_path / "empty", run_dir=tmp_path / "run", timeout=60)
    assert result.returncode == 1
    assert "manifest.json" in result.stdout and "Traceback" not in result.stdout + result.stderr
