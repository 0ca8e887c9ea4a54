"""The Prometheus alert rules name metrics the gateway exports, and Prometheus loads them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from deploy import render
from gateway.experiments.log.sink import LogCounters, LogHealth
from gateway.telemetry.metrics import GatewayMetrics

PROMETHEUS = render.DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
_METRIC = re.compile(r"\bdualserve_[a-z_]+")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _exported() -> set[str]:
    """Sample names in a gateway's exposition once the log has figures."""
    metrics = GatewayMetrics()
    health = LogHealth(LogCounters(submitted=3, written=1, dropped=1, write_errors=1), 0, False)
    metrics.log_health.update(health, worker="1")
    text = metrics.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_every_alert_has_a_duration_a_severity_and_a_summary() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= {"PredictionLogLosingRecords", "PredictionLogStoreDown"}
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")


def test_every_metric_an_alert_reads_is_exported_by_the_gateway() -> None:
    exported = _exported()
    for rule in _rules():
        for name in _METRIC.findall(rule["expr"]):
            assert name in exported, f"{rule['alert']} reads {name}, which no gateway exports"


def test_the_loss_alert_covers_both_ways_of_losing_a_record() -> None:
    loss = next(r for r in _rules() if r["alert"] == "PredictionLogLosingRecords")
    fates = re.search(r'fate=~"([^"]+)"', loss["expr"])
    assert fates is not None and set(fates.group(1).split("|")) == {"dropped", "write_errors"}


def test_prometheus_loads_the_rules_where_compose_mounts_them() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    compose = yaml.safe_load((render.DEPLOY / "compose.yaml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    targets = {m["target"]: m["source"] for m in mounts if m["type"] == "bind"}
    for path in config["rule_files"]:
        assert Path(targets[path]).name == ALERTS.name
