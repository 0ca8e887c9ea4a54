"""Every metric the Grafana dashboard queries is one the running servers really export.

Starts the real stack (`dualserve.stack.up`: TorchServe, TF Serving, the gateway), sends
traffic through both arms and a shadow policy so that the histograms and counters have
samples, scrapes the three /metrics pages Prometheus scrapes in compose, and compares.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.dashboard import queried_metrics
from deploy.render import DEPLOY

pytestmark = pytest.mark.slow

MODEL = "digits-mlp"
ROW = [0.0] * 20 + [8.0] * 24 + [0.0] * 20
ONLY_ON_FAILURE = {"dualserve_failovers_total"}
"""Counters that get samples only when a backend fails: required to be declared, not sampled."""
SUFFIXES = {"counter": ("", "_total"), "histogram": ("_bucket", "_sum", "_count")}
SAMPLE = re.compile(r"([A-Za-z_:][\w:]*)")


def _traffic(stack: dict[str, Any]) -> None:
    """Both arms pinned, both ingress protocols, then shadow mode until comparisons land."""
    admin = Path(stack["gateway"]["admin_token_file"]).read_text().strip()
    with httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as client:
        for backend in ("tensorflow", "pytorch"):
            for _ in range(5):
                reply = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]},
                                    headers={"X-Backend": backend})  # fmt: skip
                assert reply.status_code == 200, reply.text
        v2 = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}
        assert client.post(f"/v2/models/{MODEL}/infer", json=v2).status_code == 200
        policy = {"mode": "shadow", "primary": "tensorflow", "shadow_sample_rate": 1.0}
        reply = client.patch(f"/admin/models/{MODEL}/policy", json=policy,
                             headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
        assert reply.status_code == 200, reply.text
        for _ in range(10):
            client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]})
        deadline = time.monotonic() + 15
        while "dualserve_shadow_comparisons_total{" not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "no shadow comparison recorded in 15 s"
            time.sleep(0.2)


def _scrape(url: str) -> tuple[set[str], set[str]]:
    """(sample names with values, sample names the declared families can have), read from the
    text as Prometheus stores it (prometheus_client's parser would rename TF Serving's
    suffix-less counters to `_total`)."""
    sampled: set[str] = set()
    declared: set[str] = set()
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            declared |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
        elif line and not line.startswith("#"):
            sampled.add(SAMPLE.match(line).group(1))  # type: ignore[union-attr]
    return sampled, declared


def test_every_dashboard_metric_is_exported_by_a_live_server(stack: dict[str, Any]) -> None:
    _traffic(stack)
    time.sleep(1.0)  # TorchServe updates its frontend metrics after the reply is sent
    urls = [
        stack["gateway"]["rest"] + "/metrics",
        stack["tensorflow"]["metrics"],
        stack["pytorch"]["metrics"].rstrip("/") + "/metrics",
    ]
    sampled: set[str] = set()
    declared: set[str] = set()
    for url in urls:
        names, families = _scrape(url)
        sampled |= names
        declared |= families
    dashboard = json.loads((DEPLOY / "grafana/dashboards/dualserve.json").read_text())
    queried = queried_metrics(dashboard)
    assert queried - sampled - ONLY_ON_FAILURE == set(), f"no samples for {queried - sampled}"
    assert ONLY_ON_FAILURE & queried <= declared
