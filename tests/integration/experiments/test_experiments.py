"""A/B experiment against the real backends: labelled digits, feedback, analysis, restart.

The default config runs `digits-mlp-ab` (50/50 sticky). Online accuracy per arm must
equal the exported models' offline accuracy on exactly the samples that arm served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np

from dualserve.cli import _log_url
from gateway.experiments.log.store import open_store
from gateway.experiments.report import write_report
from gateway.processes.launcher import start_gateway, stop_gateway
from trainers.architecture import to_model_input
from trainers.data import load_dataset
from trainers.manifest import load_manifest

MODEL, EXPERIMENT, N = "digits-mlp", "digits-mlp-ab", 160


def _offline_classes(store: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    from trainers import tf_model, torch_model

    arts = load_manifest(store).models[MODEL].versions["1"].frameworks
    tf = tf_model.load_predictor(store / arts["tensorflow"].artifact)(x)["class"]
    pt = torch_model.load_predictor(store / arts["pytorch"].artifact)(x)["class"]
    return {"tensorflow": np.asarray(tf), "pytorch": np.asarray(pt)}


def _serve(client: httpx.Client, x: np.ndarray) -> list[str]:
    arms = []
    for i in range(len(x)):
        headers = {"X-Request-Id": f"digit-{i}", "X-Routing-Key": f"user-{i}"}
        body = {"instances": x[i : i + 1].tolist()}
        reply = client.post(f"/v1/models/{MODEL}:predict", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        arms.append(reply.headers["X-Backend"])
    return arms


def test_online_accuracy_matches_offline_and_survives_restart(
    stack: dict[str, Any], trained_store: Path, tmp_path: Path
) -> None:
    test = load_dataset("digits").test
    x, y = to_model_input(test.x[:N], "mlp"), test.y[:N].astype(int)
    with httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as client:
        arms = np.array(_serve(client, x))
        feedback = [{"request_id": f"digit-{i}", "label": int(y[i])} for i in range(N)]
        reply = client.post("/v1/feedback", json={"feedback": feedback})
        assert reply.status_code == 201 and reply.json()["recorded"] == N
        again = client.post("/v1/feedback", json={"feedback": feedback[:5]})
        assert again.status_code == 200  # duplicates count once
        before = client.get(f"/admin/experiments/{EXPERIMENT}", headers=stack["admin"]).json()
        listing = client.get("/admin/experiments", headers=stack["admin"]).json()
    offline = _offline_classes(trained_store, x)
    for arm in ("tensorflow", "pytorch"):
        served = arms == arm
        figures = before["arms"][arm]
        assert figures["requests"] == served.sum() and figures["errors"] == 0
        assert figures["accuracy"]["labelled"] == served.sum()
        assert figures["accuracy"]["correct"] == int((offline[arm][served] == y[served]).sum())
    assert 0 < (arms == "tensorflow").sum() < N  # both arms took traffic
    live = {e["id"]: e for e in listing["experiments"]}[EXPERIMENT]["arms"]
    assert live["pytorch"]["accuracy"] == before["arms"]["pytorch"]["accuracy"]["value"]

    gateway_dir = stack["paths"].gateway_dir
    stop_gateway(gateway_dir)
    state = stack["state"]
    restarted = start_gateway(state.tensorflow, state.pytorch, trained_store.resolve(), gateway_dir)
    with httpx.Client(base_url=restarted.rest, timeout=30) as client:
        after = client.get(f"/admin/experiments/{EXPERIMENT}", headers=stack["admin"]).json()
    assert after == before

    store = open_store(_log_url(stack["paths"].run_dir), None)
    try:
        md, html = write_report(store, EXPERIMENT, tmp_path)
    finally:
        store.close()
    assert md.read_text().index("## Decision") < md.read_text().index("## Sample-ratio check")
    assert (
        html.read_text().count("data:image/png;base64,") == 4
    )  # sequences, latency, accuracy, traffic
