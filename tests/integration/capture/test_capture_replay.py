"""Issue 28's acceptance on the real stack: capture 20% of 2,000 requests by routing key
over every ingress (TF REST, v2 REST, TF Serving gRPC, OIP gRPC), open the files with
pandas, then `dualserve replay` them against the other framework and a newly trained
version; its agreement and McNemar figures equal a direct offline computation on the
same tensors (each backend asked straight, by version), and the captured arm replayed
against itself disagrees nowhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from scipy.stats import binom
from statsmodels.stats.contingency_tables import mcnemar

from backends.torchserve.launcher import read_token
from gateway._proto import oip
from gateway.capture.reader import read_capture
from gateway.capture.records import INPUT, OUTPUT, tensors_of
from tests.integration.conftest import running_stack
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
MODEL, SHARE, KEYS, PER_KEY = "digits-mlp", 0.2, 200, 10
INGRESSES = ("tf-rest", "v2-rest", "tf-grpc", "oip-grpc")


@pytest.fixture(scope="module")
def stack(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A stack on a copy of the trained store (a version is trained here), capturing
    20% of digits-mlp; files closed after 1 s so the test reads them soon."""
    root = tmp_path_factory.mktemp("capture")
    store = root / "model_store"
    shutil.copytree(trained_store, store)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DUALSERVE_CAPTURE__MAX_FILE_AGE_S", "1")
        for backend in ("TENSORFLOW", "PYTORCH"):  # a starved 2-core machine: judge no CPU
            env.setenv(f"DUALSERVE_{backend}__TIMEOUT_S", "30")
        with running_stack(store, root / "run", capture={MODEL: SHARE}) as state:
            yield state


def _tf_grpc(channel: grpc.Channel, x: np.ndarray, metadata: list[tuple[str, str]]) -> Any:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(x))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.Predict(request, timeout=60, metadata=metadata)


def _oip_grpc(channel: grpc.Channel, x: np.ndarray, metadata: list[tuple[str, str]]) -> Any:
    request = oip.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    del tensor
    request.raw_input_contents.append(np.ascontiguousarray(x, np.float32).tobytes())
    call = channel.unary_unary(
        f"/{oip.SERVICE}/ModelInfer",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=oip.ModelInferResponse.FromString,
    )
    return call(request, timeout=60, metadata=metadata)


def _send_all(stack: dict[str, Any], x: np.ndarray) -> dict[str, str]:
    """2,000 requests, each key's 10 spread over the four ingresses; request id -> key."""
    rest, address = stack["gateway"]["rest"], stack["gateway"]["grpc"]
    sent: dict[str, str] = {}
    with (
        httpx.Client(base_url=rest, timeout=60) as client,
        grpc.insecure_channel(address) as channel,
    ):

        def one(n: int) -> None:
            key, j = f"user-{n // PER_KEY}", n % PER_KEY
            ingress = INGRESSES[j % len(INGRESSES)]
            request_id = f"{key}-{j}-{ingress}"
            row = x[n % len(x)][None, :]
            headers = {"X-Routing-Key": key, "X-Request-Id": request_id}
            metadata = [("x-routing-key", key), ("x-request-id", request_id)]
            if ingress == "tf-rest":
                reply = client.post(
                    f"/v1/models/{MODEL}:predict", json={"instances": row.tolist()}, headers=headers
                )
                assert reply.status_code == 200, reply.text
            elif ingress == "v2-rest":
                body = {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": list(row.shape),
                            "datatype": "FP32",
                            "data": row.ravel().tolist(),
                        }
                    ]
                }
                reply = client.post(f"/v2/models/{MODEL}/infer", json=body, headers=headers)
                assert reply.status_code == 200, reply.text
            elif ingress == "tf-grpc":
                _tf_grpc(channel, row, metadata)
            else:
                _oip_grpc(channel, row, metadata)
            sent[request_id] = key

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(KEYS * PER_KEY)))
    return sent


def _capture_metrics(stack: dict[str, Any]) -> dict[str, float]:
    text = httpx.get(f"{stack['gateway']['rest']}/metrics", timeout=10).text
    found = {}
    for line in text.splitlines():
        if line.startswith("dualserve_capture_records_total{"):
            fate = line.split('fate="')[1].split('"')[0]
            found[fate] = float(line.rsplit(" ", 1)[1])
    return found


def _wait(what: str, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.2)


def _direct(stack: dict[str, Any], framework: str, version: int, x: np.ndarray) -> np.ndarray:
    """Top-1 per row straight from one backend's version (the offline truth)."""
    body = {"instances": x.tolist()}
    if framework == "tensorflow":
        url = f"{stack['tensorflow']['rest']}/v1/models/{MODEL}/versions/{version}:predict"
        reply = httpx.post(url, json=body, timeout=120)
    else:
        token = read_token(Path(stack["pytorch"]["token_file"]), "inference")
        url = f"{stack['pytorch']['inference']}/predictions/{MODEL}/{version}"
        reply = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
    assert reply.status_code == 200, reply.text
    return np.array([row["class"] for row in reply.json()["predictions"]], np.int64)


def _served_by_both(stack: dict[str, Any], version: int) -> bool:
    url = f"{stack['gateway']['rest']}/v1/models/{MODEL}/versions/{version}/metadata"
    return all(
        httpx.get(url, headers={"X-Backend": arm}, timeout=10).status_code == 200
        for arm in ("tensorflow", "pytorch")
    ) and all(
        httpx.post(
            f"{stack['gateway']['rest']}/v1/models/{MODEL}/versions/{version}:predict",
            json={"instances": [[0.0] * 64]}, headers={"X-Backend": arm}, timeout=30,
        ).headers.get("X-Model-Version") == str(version)
        for arm in ("tensorflow", "pytorch")
    )  # fmt: skip


def test_capture_twenty_percent_by_key_then_replay_against_two_candidates(
    stack: dict[str, Any], tmp_path: Path, figures: Callable[[str], None]
) -> None:
    data = load_dataset("digits").test
    x, y = to_model_input(data.x, "mlp"), np.asarray(data.y, np.int64)
    pin = httpx.patch(
        f"{stack['gateway']['rest']}/admin/models/{MODEL}/policy",
        json={"mode": "pinned", "primary": "tensorflow"}, headers=stack["admin"], timeout=10,
    )  # fmt: skip
    assert pin.status_code == 200, pin.text
    started = time.monotonic()
    sent = _send_all(stack, x)
    sending_s = time.monotonic() - started
    capture_dir = Path(stack["paths"].gateway_dir) / "capture"

    def all_written() -> bool:
        m = _capture_metrics(stack)
        return (
            m.get("submitted", 0) > 0
            and m.get("written") == m.get("submitted")
            and not list(capture_dir.rglob("*.part"))
        )

    _wait("every captured request written and its file closed", all_written, 60)
    counts = _capture_metrics(stack)
    assert counts.get("dropped", 0) == 0 and counts.get("write_errors", 0) == 0

    # the files open with pandas; whole keys only, their share within binomial bounds
    frame = read_capture(capture_dir)
    assert set(frame.columns) >= {"request_id", "ts", "model", "arm", "version", "key_hash",
                                  "latency_ms", "status", "input.input", "input.input.shape",
                                  "output.probabilities", "output.class"}  # fmt: skip
    captured_ids = set(frame["request_id"])
    assert captured_ids <= set(sent) and len(frame) == len(captured_ids) == counts["written"]
    kept_keys = {sent[i] for i in captured_ids}
    for key in kept_keys:  # every request of a kept key, over all four ingresses
        assert {i for i in sent if sent[i] == key} <= captured_ids, key
    low, high = binom.ppf(0.0005, KEYS, SHARE), binom.ppf(0.9995, KEYS, SHARE)
    assert low <= len(kept_keys) <= high, (len(kept_keys), low, high)
    assert set(frame["arm"]) == {"tensorflow"} and set(frame["version"]) == {1}
    assert (frame["status"] == 200).all()

    # labels fed back by request id (the prediction log's feedback), for every capture
    index = {rid: int(rid.split("-")[1]) * PER_KEY + int(rid.split("-")[2]) for rid in sent}
    truth = {rid: int(y[index[rid] % len(y)]) for rid in captured_ids}
    items = [{"request_id": rid, "label": label} for rid, label in truth.items()]
    fed = httpx.post(
        f"{stack['gateway']['rest']}/v1/feedback", json={"feedback": items}, timeout=60
    )
    assert fed.status_code in (200, 201, 202, 207), fed.text

    # what is replayed: the files as they are now (later requests, the probes below, may
    # be captured too)
    snapshot = tmp_path / "capture"
    for file in capture_dir.rglob("*.parquet"):
        (snapshot / file.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, snapshot / file.parent.name / file.name)

    # a newly trained version (one epoch: a different model), landed on both frameworks
    train = subprocess.run(
        [sys.executable, "-m", "trainers", "--framework", "both", "--model", "mlp",
         "--epochs", "1", "--seed", "1", "--model-store", str(stack["store"])],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )  # fmt: skip
    assert train.returncode == 0, train.stdout + train.stderr
    _wait("version 2 served by both frameworks", lambda: _served_by_both(stack, 2), 240)

    out = tmp_path / "report"
    replay = subprocess.run(
        [sys.executable, "-m", "dualserve", "replay", str(snapshot), "--arm", "pytorch:1",
         "--arm", "tensorflow:2", "--run-dir", str(stack["paths"].run_dir), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    report = json.loads((out / "replay.json").read_text())
    assert (out / "index.html").read_text().count("data:image/png;base64,") == 1
    assert (out / "replay.md").is_file()

    # the offline truth: the same tensors, straight to each backend's version
    rows = frame.to_dict("records")
    xs = np.concatenate([tensors_of(r, INPUT)["input"] for r in rows])
    captured_top1 = np.concatenate([tensors_of(r, OUTPUT)["class"] for r in rows])
    labels = np.array([truth[r["request_id"]] for r in rows])
    assert np.array_equal(_direct(stack, "tensorflow", 1, xs), captured_top1)
    floor = report["floor"]
    assert floor["disagreements"] == 0 and floor["failed"] == 0
    assert floor["examples"] == len(rows)
    for arm, (framework, version) in {
        "pytorch:1": ("pytorch", 1),
        "tensorflow:2": ("tensorflow", 2),
    }.items():
        direct = _direct(stack, framework, version, xs)
        result = report["arms"][arm]
        assert result["failed"] == 0 and result["answered_by"] == {
            f"{framework}:{version}": len(rows)
        }
        assert result["disagreements"] == int(np.sum(direct != captured_top1))
        cap_ok, arm_ok = captured_top1 == labels, direct == labels
        b, c = int(np.sum(cap_ok & ~arm_ok)), int(np.sum(~cap_ok & arm_ok))
        assert (result["control_only"], result["candidate_only"]) == (b, c)
        assert result["labelled"] == len(rows)
        if b + c:
            table = [[np.sum(cap_ok & arm_ok), b], [c, np.sum(~cap_ok & ~arm_ok)]]
            assert result["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
        assert arm in report["sentences"][arm]
    # the same replay straight to the backends (no gateway): the same answers
    direct_out = tmp_path / "direct"
    replay_direct = subprocess.run(
        [sys.executable, "-m", "dualserve", "replay", str(snapshot), "--arm", "pytorch:1",
         "--direct", "--run-dir", str(stack["paths"].run_dir), "--out", str(direct_out)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert replay_direct.returncode == 0, replay_direct.stdout + replay_direct.stderr
    straight = json.loads((direct_out / "replay.json").read_text())
    assert straight["floor"]["disagreements"] == 0 and straight["floor"]["failed"] == 0
    mirrored = report["arms"]["pytorch:1"]
    assert straight["arms"]["pytorch:1"]["disagreements"] == mirrored["disagreements"]
    assert straight["arms"]["pytorch:1"]["answered_by"] == {"pytorch:1": len(rows)}
    figures(
        f"capture: {len(sent)} requests sent in {sending_s:.1f} s over {len(INGRESSES)} ingresses,"
        f" {len(frame)} captured ({len(kept_keys)} of {KEYS} keys);"
        f" replay: {' | '.join(report['sentences'].values())}"
    )
