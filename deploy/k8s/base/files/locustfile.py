"""Locust users for the in-cluster load test (ConfigMap locust-files; see ../locust.yaml).

Each simulated user has its own routing key, so sticky splits see a realistic population,
and sends real digits test images (payloads.json, written by deploy/render.py) through both
ingress protocols. A reply counts as a failure unless it is 200 with one class per row.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path

from locust import HttpUser, between, task

PAYLOADS = json.loads(Path(os.environ.get("PAYLOADS", "payloads.json")).read_text())
API_KEYS: list[str] = json.loads(os.environ.get("API_KEYS") or "[]")
MODEL: str = PAYLOADS["model"]
ROWS: list[list[int]] = PAYLOADS["rows"]


class GatewayUser(HttpUser):
    wait_time = between(0.01, 0.05)

    def on_start(self) -> None:
        self.client.headers["X-Routing-Key"] = f"user-{uuid.uuid4().hex[:12]}"
        if API_KEYS:
            self.client.headers["Authorization"] = f"Bearer {API_KEYS[0]}"

    @task(3)
    def tfserving_rest(self) -> None:
        rows = random.sample(ROWS, k=random.choice((1, 1, 1, 4)))
        with self.client.post(
            f"/v1/models/{MODEL}:predict",
            json={"instances": rows},
            name="/v1/models/[model]:predict",
            catch_response=True,
        ) as reply:
            predictions = reply.json().get("predictions", []) if reply.ok else []
            if len(predictions) != len(rows):
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")

    @task(1)
    def v2_infer(self) -> None:
        row = random.choice(ROWS)
        body = {
            "inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]
        }
        with self.client.post(
            f"/v2/models/{MODEL}/infer", json=body, name="/v2/models/[model]/infer",
            catch_response=True,
        ) as reply:  # fmt: skip
            outputs = reply.json().get("outputs", []) if reply.ok else []
            if not any(o.get("name") == "class" for o in outputs):
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")
