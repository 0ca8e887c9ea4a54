"""Is the comparison fair? Each server's version, workers, threads, batching and device as
it ran, the load generator's CPU, and a warning when the load generator or the machine was
saturated (then the figures measure them, not the servers).

Everything comes from `raw/meta.json`: the environment (package versions, the TF server
kind, GPUs), the servers' own config files as run (`backend_settings`: TF Serving's
`tfserving.json` settings, TorchServe's `config.properties`, the gateway's YAML) and the
processes' facts the sweep read with psutil (`processes`: threads, children, thread-pool
variables). A figure not found shows "n/a".
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from loadtest.results import Summary

SATURATED = 0.9  # a CPU share above this: the load generator's process, or the machine
FAIRNESS_COLUMNS = ["server", "version", "processes / workers", "threads", "batching", "device"]


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.startswith("#")}


def _device(meta: dict[str, Any], gpus: str | None = None) -> str:
    found = str(meta.get("environment", {}).get("gpu", "unknown"))
    if gpus is not None and gpus in ("", "0"):
        return "CPU"
    return "CPU (no GPU on the machine)" if found == "none" else found


def _threads(meta: dict[str, Any], name: str) -> str:
    facts = meta.get("processes", {}).get(name)
    if not facts:
        return "n/a"
    env = ", ".join(f"{k}={v}" for k, v in facts.get("thread_env", {}).items())
    counted = f"{facts['threads']} OS threads, {facts['children']} child processes"
    return f"{env}; {counted}" if env else counted


def tensorflow_row(meta: dict[str, Any]) -> list[str]:
    env = meta.get("environment", {})
    raw = meta.get("backend_settings", {}).get("tfserving/tfserving.json")
    settings = json.loads(raw).get("settings", {}) if raw else {}
    batching = "off"
    if settings.get("enable_batching"):
        batching = (
            f"up to {settings.get('max_execution_batch_size')} per batch, waits "
            f"{settings.get('batch_timeout_micros')} us, {settings.get('num_batch_threads')} "
            "batch thread(s)"
        )
    threads = f"intra-op {settings.get('intra_op_threads', 'n/a')}, inter-op " + str(
        settings.get("inter_op_threads", "n/a")
    )
    return [
        "TF Serving",
        f"{env.get('tf_serving', 'n/a')}; tensorflow {env.get('packages', {}).get('tensorflow')}",
        "1 server process",
        f"{threads}; {_threads(meta, 'tensorflow')}",
        batching if settings else "n/a",
        _device(meta),
    ]


def torchserve_row(meta: dict[str, Any]) -> list[str]:
    packages = meta.get("environment", {}).get("packages", {})
    text = meta.get("backend_settings", {}).get("torchserve/config.properties", "")
    props = _properties(text)
    batches = set()
    for versions in json.loads(props.get("models", "{}") or "{}").values():
        for v in versions.values():
            batches.add(f"up to {v.get('batchSize')} per batch, waits {v.get('maxBatchDelay')} ms")
    return [
        "TorchServe",
        f"torchserve {packages.get('torchserve')}; torch {packages.get('torch')}",
        f"{props.get('default_workers_per_model', 'n/a')} Python worker(s) per model",
        _threads(meta, "pytorch"),
        "; ".join(sorted(batches)) or "n/a",
        _device(meta, props.get("number_of_gpu")),
    ]


def gateway_row(meta: dict[str, Any]) -> list[str]:
    text = meta.get("backend_settings", {}).get("gateway/gateway.yaml", "")
    workers = re.search(r"^workers:\s*(\d+)", text, re.MULTILINE)
    return [
        "gateway",
        f"git {meta.get('environment', {}).get('git_commit', 'n/a')}",
        f"{workers.group(1) if workers else 1} worker process(es)",
        _threads(meta, "gateway"),
        "none (forwards each request)",
        "CPU",
    ]


def fairness_rows(meta: dict[str, Any]) -> list[list[str]]:
    """One row per server: TF Serving, TorchServe, the gateway."""
    return [tensorflow_row(meta), torchserve_row(meta), gateway_row(meta)]


def load_generator_lines(summaries: list[Summary], meta: dict[str, Any]) -> list[str]:
    """The load generator's set-up and CPU, and the machine's CPU, in words."""
    locust = meta.get("locust", {})
    busiest = max(summaries, key=lambda s: s.loadgen_cpu, default=None)
    boxes = [s for s in summaries if not math.isnan(s.box_cpu)]
    box = max(boxes, key=lambda s: s.box_cpu, default=None)
    lines = [
        f"Locust: {locust.get('processes', 1)} process(es) per cell, CPU pinning "
        f"{locust.get('cpu_pinning', 'none')}",
    ]
    if busiest:
        lines.append(
            f"busiest load-generator process: {100 * busiest.loadgen_cpu:.0f}% of a core "
            f"({busiest.target} {busiest.protocol} {busiest.load})"
        )
    if box:
        lines.append(
            f"machine CPU, highest over a cell: {100 * box.box_cpu:.0f}% of all cores "
            f"({box.target} {box.protocol} {box.load})"
        )
    return lines


def saturation_warnings(summaries: list[Summary]) -> list[str]:
    """A warning per kind of saturation found; [] when the measurement was not limited."""
    warnings = []
    loadgen = [s for s in summaries if s.saturated]
    if loadgen:
        warnings.append(
            f"⚠ the load generator was saturated (a Locust process above 90% of a core) in "
            f"{len(loadgen)} of {len(summaries)} cells: there it, not the server, set the "
            "pace; run with --workers 2 or pin CPUs (--pin-cpus auto)"
        )
    box = [s for s in summaries if not math.isnan(s.box_cpu) and s.box_cpu > SATURATED]
    if box:
        warnings.append(
            f"⚠ the machine's CPUs were above {100 * SATURATED:.0f}% busy in {len(box)} of "
            f"{len(summaries)} cells: servers and load generator competed for cores"
        )
    return warnings
