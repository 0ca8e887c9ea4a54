"""The Grafana dashboard (deploy/grafana/dashboards/dualserve.json), built from a panel table.

Every query names its metrics with a `{job=...}` selector so that the tests can list them and
check each against a live scrape of the gateway and both backends.
"""

from __future__ import annotations

import re
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GW = 'job="gateway", model=~"$model"'
TF = 'job="tfserving", model_name=~"$model"'
TS = 'job="torchserve", model_name=~"$model"'


def rate(metric: str, selector: str, by: str, window: str = "1m") -> str:
    """`sum by (<by>) (rate(metric{selector}[window]))`."""
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"


def quantile(q: float, histogram: str, selector: str, by: str) -> str:
    return f"histogram_quantile({q}, {rate(histogram + '_bucket', selector, 'le, ' + by)})"


def mean(total: str, count: str, selector: str, by: str) -> str:
    return f"{rate(total, selector, by)} / {rate(count, selector, by)}"


SHADOW = "dualserve_shadow_comparisons_total"
TF_BATCH = ":tensorflow:serving:batching_session:processed_batch_size"
TF_LATENCY = ":tensorflow:serving:request_latency"
AGREE = GW + ', result="agree"'
COMPARED = GW + ', result=~"agree|disagree"'

# (title, unit, [(expr, legend)]); two panels per row.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Gateway requests/s by arm", "reqps", [
        (rate("dualserve_requests_total", GW, "arm"), "{{arm}}"),
    ]),
    ("Gateway non-2xx answers/s", "reqps", [
        (rate("dualserve_requests_total", GW + ', status!~"2.."', "arm, status"),
         "{{arm}} {{status}}"),
    ]),
    ("Latency at the gateway p50 / p99", "s", [
        (quantile(0.5, "dualserve_request_latency_seconds", GW, "arm"), "p50 {{arm}}"),
        (quantile(0.99, "dualserve_request_latency_seconds", GW, "arm"), "p99 {{arm}}"),
    ]),
    ("Backend call latency p99 (seen by the gateway)", "s", [
        (quantile(0.99, "dualserve_upstream_latency_seconds", GW, "arm"), "{{arm}}"),
    ]),
    ("Gateway overhead p50 / p99 (upstream excluded)", "s", [
        (quantile(0.5, "dualserve_gateway_overhead_seconds", 'job="gateway"', "protocol"),
         "p50 {{protocol}}"),
        (quantile(0.99, "dualserve_gateway_overhead_seconds", 'job="gateway"', "protocol"),
         "p99 {{protocol}}"),
    ]),
    ("Shadow top-1 agreement", "percentunit", [
        (f"{rate(SHADOW, AGREE, 'model', '5m')} / {rate(SHADOW, COMPARED, 'model', '5m')}",
         "{{model}}"),
    ]),
    ("Failovers/s and breaker state", "short", [
        (rate("dualserve_failovers_total", GW, "from_arm"), "failover from {{from_arm}}"),
        ('max by (arm) (dualserve_breaker_state{job="gateway"})', "breaker {{arm}} (2 = open)"),
    ]),
    ("TF Serving requests/s", "reqps", [
        (rate(":tensorflow:serving:request_count", TF, "model_name, status"),
         "{{model_name}} {{status}}"),
    ]),
    ("TF Serving request latency p99", "µs", [
        (quantile(0.99, TF_LATENCY, TF, "model_name"), "{{model_name}}"),
    ]),
    ("TF Serving server-side batch size (mean)", "short", [
        (mean(TF_BATCH + "_sum", TF_BATCH + "_count", TF, "model_name"), "{{model_name}}"),
    ]),
    ("TorchServe requests/s", "reqps", [
        (rate("ts_inference_requests_total", TS, "model_name"), "{{model_name}}"),
    ]),
    # TorchServe 0.12 declares ts_inference_latency_microseconds and ts_queue_latency_microseconds
    # but fills neither for gRPC inference; these gauges (latest value, ms) it does fill.
    ("TorchServe prediction, queue and worker time (ms, latest)", "ms", [
        ('max by (ModelName) (PredictionTime{job="torchserve", ModelName=~"$model"})',
         "prediction {{ModelName}}"),
        ('max(QueueTime{job="torchserve"})', "queue"),
        ('max(WorkerThreadTime{job="torchserve"})', "worker thread"),
    ]),
]  # fmt: skip

MODEL_VARIABLE_QUERY = 'label_values(dualserve_requests_total{job="gateway"}, model)'


def _panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [_target(i, expr, legend) for i, (expr, legend) in enumerate(queries)],
    }


def _target(index: int, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": expr,
            "legendFormat": legend}  # fmt: skip


def dashboard() -> dict[str, Any]:
    """The whole dashboard model, in Grafana's JSON schema (schemaVersion 39)."""
    model_variable = {
        "name": "model",
        "label": "model",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": MODEL_VARIABLE_QUERY, "refId": "model"},
        "definition": MODEL_VARIABLE_QUERY,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    }
    return {
        "uid": "dualserve",
        "title": "dualserve: TensorFlow Serving vs TorchServe",
        "tags": ["dualserve"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [model_variable]},
        "panels": [_panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "offset", "bool", "inf", "nan"}  # fmt: skip
_STRIP = re.compile(
    r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]'
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords and labels removed)."""
    bare = _STRIP.sub(" ", expr)
    return {
        name
        for name, call in _IDENT.findall(bare)
        if not call and name.lower() not in _PROMQL_WORDS
    }


def queried_metrics(model: dict[str, Any]) -> set[str]:
    """Every metric the dashboard's panels and template variables query."""
    exprs = [t["expr"] for panel in model["panels"] for t in panel.get("targets", [])]
    for variable in model.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        exprs += re.findall(r"label_values\((.*),\s*\w+\)", text)
    return set().union(*(metric_names(e) for e in exprs))
