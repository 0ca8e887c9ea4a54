"""Every deployment file validated offline: the compose spec schema, Kubernetes schemas for a
pinned version (kubernetes-validate), kustomize overlays and components (the Prometheus
Operator ServiceMonitors against the subset of their CRD's schema they use), Prometheus and
Grafana files."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from backends.tfserving.aux_config import DEFAULT_METRICS_PATH
from deploy import render
from deploy.dashboard import queried_metrics
from gateway.settings import GatewaySettings, load_settings

DEPLOY = render.DEPLOY
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.32.0"
"""The Kubernetes API the manifests target (kubernetes-validate ships its schemas)."""
OVERLAYS = ("cpu", "gpu")
BACKENDS = ("tfserving", "torchserve")
_HASH = re.compile(r"-[a-z0-9]{10}$")
"""The content hash kustomize appends to generated ConfigMap names."""


# --- compose ---------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def _compose_schema() -> dict[str, Any]:
    """The compose spec schema as vendored by check-jsonschema (pinned in the dev deps)."""
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    return dict(json.loads((vendor / "compose-spec.json").read_text()))


def test_compose_file_matches_the_compose_spec() -> None:
    validator = jsonschema.Draft202012Validator(_compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


def test_the_compose_schema_check_catches_mistakes() -> None:
    broken = _compose()
    broken["services"]["gateway"]["healthcheck"]["interval"] = ["10s"]
    broken["services"]["gateway"]["restart_policy"] = "always"
    validator = jsonschema.Draft202012Validator(_compose_schema())
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_gpu_profile_reserves_gpus_and_cpu_profile_does_not() -> None:
    services = _compose()["services"]
    for backend in BACKENDS:
        gpu, cpu = services[f"{backend}-gpu"], services[f"{backend}-cpu"]
        assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert "deploy" not in cpu
        assert (
            gpu["networks"]["default"]["aliases"]
            == [backend]
            == cpu["networks"]["default"]["aliases"]
        )


def test_compose_images_are_pinned_and_official() -> None:
    services = _compose()["services"]
    assert services["tfserving-gpu"]["image"] == "tensorflow/serving:2.21.0-gpu"
    assert services["torchserve-gpu"]["build"]["args"]["TORCHSERVE_IMAGE"] == (
        "pytorch/torchserve:0.12.0-gpu"
    )
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name


def test_compose_every_service_has_a_health_check_and_mounts_models_read_only() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        for volume in service.get("volumes", []):
            if volume["target"] == "/models":
                assert volume["read_only"] is True, name
    for name in ("gateway", *(f"{b}-{p}" for b in BACKENDS for p in ("gpu", "cpu"))):
        assert any(v["target"] == "/models" for v in services[name]["volumes"]), name


def test_compose_gateway_reads_torchserve_keys_where_torchserve_writes_them() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((DEPLOY / "config/gateway/gateway.yaml").read_text())
    token_dir = str(Path(config["pytorch"]["token_file"]).parent)
    assert services["torchserve-gpu"]["working_dir"] == token_dir
    mounts = {v["target"]: v for v in services["gateway"]["volumes"]}
    assert mounts[token_dir]["source"] == "torchserve-keys" and mounts[token_dir]["read_only"]
    assert config["auth"]["admin_token_file"] == "/run/secrets/admin_token"
    assert services["gateway"]["secrets"] == ["admin_token"]


def test_prometheus_scrapes_the_gateway_and_both_backends_at_their_real_paths() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    expected = {
        "gateway": ("/metrics", "gateway:8080"),
        "tfserving": (DEFAULT_METRICS_PATH, f"tfserving:{render.TF_REST}"),
        "torchserve": ("/metrics", f"torchserve:{render.TS_PORTS.metrics}"),
    }
    for job, (path, target) in expected.items():
        assert jobs[job]["metrics_path"] == path
        assert jobs[job]["static_configs"][0]["targets"] == [target]


def test_grafana_dashboard_parses_and_uses_the_provisioned_datasource() -> None:
    model = json.loads((DEPLOY / "grafana/dashboards/dualserve.json").read_text())
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    uid = source["datasources"][0]["uid"]
    assert model["panels"] and all(p["datasource"]["uid"] == uid for p in model["panels"])
    metrics = queried_metrics(model)
    assert {"dualserve_requests_total", ":tensorflow:serving:request_count",
            "ts_inference_requests_total"} <= metrics  # fmt: skip
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/dualserve.yaml").read_text()
    )
    mounts = {v["target"]: v["source"] for v in _compose()["services"]["grafana"]["volumes"]}
    assert mounts[provider["providers"][0]["options"]["path"]] == "./grafana/dashboards"


# --- Kubernetes ------------------------------------------------------------------------


def _kustomization(directory: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((directory / "kustomization.yaml").read_text()))


def _merge(base: Any, patch: Any) -> Any:
    """A small strategic merge: maps merge, lists of named maps merge by name, others replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(i, dict) and "name" in i for i in [*base, *patch]):
        merged = {i["name"]: i for i in base}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"], {}), item)
        return list(merged.values())
    return copy.deepcopy(patch)


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _python_build(directory: Path) -> list[dict[str, Any]]:
    """What `kustomize build` does for the features used here, for machines without it."""
    spec = _kustomization(directory)
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        docs += _python_build(path) if path.is_dir() else _load_all(path)
    for component in spec.get("components", []):  # kind: Component, resources only here
        docs += _python_build((directory / component).resolve())
    for generator in spec.get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in generator["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"]}, "data": data})  # fmt: skip
    by_key = {_key(d): d for d in docs}
    for patch_ref in spec.get("patches", []):
        for patch in _load_all(directory / patch_ref["path"]):
            assert _key(patch) in by_key, f"{patch_ref['path']} patches nothing: {_key(patch)}"
            by_key[_key(patch)] = _merge(by_key[_key(patch)], patch)
    docs = list(by_key.values())
    for image in spec.get("images", []):
        _retag(docs, image["name"], image["newTag"])
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = spec["namespace"]
    return docs


def _retag(docs: list[dict[str, Any]], name: str, tag: str) -> None:
    for container in (c for d in docs for c in _containers(d)):
        if container["image"].split(":")[0] == name:
            container["image"] = f"{name}:{tag}"


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


WORKLOADS = ("Deployment", "StatefulSet", "Job")


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] not in WORKLOADS:
        return []
    return list(doc["spec"]["template"]["spec"]["containers"])


def _kustomize_build(directory: Path) -> list[dict[str, Any]] | None:
    """`kubectl kustomize` (kustomize built in) or `kustomize build`; None if neither exists."""
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build", str(directory)]
    else:
        return None
    output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return [d for d in yaml.safe_load_all(output.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(name, built documents): real kustomize where available, else the Python build."""
    directory = K8S / "overlays" / request.param
    built = _kustomize_build(directory)
    return request.param, built if built is not None else _python_build(directory)


def _by_name(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Documents of one kind by name, with kustomize's ConfigMap hash suffix removed."""
    return {_HASH.sub("", d["metadata"]["name"]): d for d in docs if d["kind"] == kind}


def test_every_manifest_is_valid_for_the_pinned_kubernetes(overlay: tuple[str, list]) -> None:
    _, docs = overlay
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = _load_all(K8S / "base/gateway.yaml")[0]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", [*OVERLAYS, "monitoring"])
def test_python_build_agrees_with_kustomize(name: str) -> None:
    directory = K8S / "overlays" / name
    built = _kustomize_build(directory)
    if built is None:
        pytest.skip("no kustomize here: the Python build alone is checked")
    ours = _python_build(directory)
    assert sorted(_key(d) for d in ours) == sorted(
        (kind, _HASH.sub("", name)) for kind, name in map(_key, built)
    )
    images = sorted(c["image"] for d in ours for c in _containers(d))
    assert images == sorted(c["image"] for d in built for c in _containers(d))


def test_the_cluster_has_every_required_object(overlay: tuple[str, list]) -> None:
    _, docs = overlay
    deployments = _by_name(docs, "Deployment")
    assert set(deployments) == {"gateway", *BACKENDS}
    assert set(_by_name(docs, "Service")) >= {"gateway", *BACKENDS, "locust-master"}
    hpas = _by_name(docs, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == set(deployments)
    pdb = _by_name(docs, "PodDisruptionBudget")["gateway"]
    labels = deployments["gateway"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert set(_by_name(docs, "Job")) == {"locust-master", "locust-worker"}
    assert set(_by_name(docs, "StatefulSet")) == {"postgres"} <= set(_by_name(docs, "Service"))
    assert "dualserve" in _by_name(docs, "Namespace")
    assert "Secret" not in {d["kind"] for d in docs}  # never overwritten by `apply -k`


def test_the_token_secret_is_valid_and_has_every_key_the_pods_read(
    overlay: tuple[str, list],
) -> None:
    _, docs = overlay
    (secret,) = _load_all(K8S / "secret.yaml")
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    keys = set(secret["stringData"])
    refs = [ref for doc in docs for ref in _secret_refs(doc)]
    assert {r["key"] for r in refs} == keys
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}


def _secret_refs(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Every (secret name, key) a pod template reads, from env and from volumes."""
    if doc["kind"] not in WORKLOADS:
        return []
    pod = doc["spec"]["template"]["spec"]
    env = [e for c in pod["containers"] for e in c.get("env", [])]
    refs = [e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})]
    for volume in (v for v in pod.get("volumes", []) if "secret" in v):
        refs += [{"name": volume["secret"]["secretName"], "key": i["key"]}
                 for i in volume["secret"]["items"]]  # fmt: skip
    return refs


def test_every_server_has_probes_limits_and_read_only_models(overlay: tuple[str, list]) -> None:
    _, docs = overlay
    for name, deployment in _by_name(docs, "Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"readinessProbe", "livenessProbe"} <= set(container), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
        assert mount["readOnly"] is True, name
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def test_probes_hit_each_servers_real_health_endpoints(overlay: tuple[str, list]) -> None:
    _, docs = overlay
    deployments = _by_name(docs, "Deployment")

    def path(name: str, probe: str) -> str:
        return str(
            deployments[name]["spec"]["template"]["spec"]["containers"][0][probe]["httpGet"]["path"]
        )

    assert (path("gateway", "readinessProbe"), path("gateway", "livenessProbe")) == (
        "/readyz",
        "/healthz",
    )
    assert path("tfserving", "readinessProbe") == "/v1/models/digits-mlp/metadata"
    assert path("tfserving", "livenessProbe") == "/v1/models/digits-mlp"
    assert path("torchserve", "readinessProbe") == path("torchserve", "livenessProbe") == "/ping"


def test_gpu_overlay_requests_gpus_and_gpu_images(overlay: tuple[str, list]) -> None:
    name, docs = overlay
    deployments = _by_name(docs, "Deployment")
    for backend in BACKENDS:
        container = deployments[backend]["spec"]["template"]["spec"]["containers"][0]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert (gpus == 1) == (name == "gpu"), backend
        assert container["image"].endswith("-gpu") == (name == "gpu"), container["image"]
    torchserve = deployments["torchserve"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in torchserve["env"]}
    assert env.get("TS_NUMBER_OF_GPU") == ("1" if name == "gpu" else None)


def test_cluster_gateway_config_loads_with_the_local_schema(overlay: tuple[str, list]) -> None:
    _, docs = overlay
    config = yaml.safe_load(_by_name(docs, "ConfigMap")["gateway-config"]["data"]["gateway.yaml"])
    settings = GatewaySettings.model_validate(config)
    services = _by_name(docs, "Service")
    for url in settings.tensorflow.rest + settings.pytorch.rest:
        host, port = url.removeprefix("http://").split(":")
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, url
    gateway = _by_name(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in gateway["containers"][0]["volumeMounts"]}
    token_file = settings.auth.admin_token_file
    assert token_file is not None and str(token_file.parent) in mounts
    assert "/etc/dualserve" in mounts


def test_locust_workers_find_the_master(overlay: tuple[str, list]) -> None:
    _, docs = overlay
    jobs, services = _by_name(docs, "Job"), _by_name(docs, "Service")
    worker_args = jobs["locust-worker"]["spec"]["template"]["spec"]["containers"][0]["args"]
    master_host = next(a.split("=", 1)[1] for a in worker_args if a.startswith("--master-host"))
    master_labels = jobs["locust-master"]["spec"]["template"]["metadata"]["labels"]
    assert services[master_host]["spec"]["selector"].items() <= master_labels.items()
    master_args = jobs["locust-master"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--host=http://gateway:8080" in master_args
    expected = jobs["locust-worker"]["spec"]["parallelism"]
    assert f"--expect-workers={expected}" in master_args


def test_locustfile_loads_its_payloads(tmp_path: Path) -> None:
    locust = Path(sys.executable).parent / "locust"
    files_dir = K8S / "base/files"
    assert locust.is_file(), "locust is not installed: run scripts/setup.sh"
    env = {"PAYLOADS": str(files_dir / "payloads.json"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [locust, "-f", str(files_dir / "locustfile.py"), "--list"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "GatewayUser" in result.stdout


def _gateway_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The gateway container's environment as the kubelet builds it: secret keys from
    secret.yaml, `$(NAME)` replaced by earlier variables (Kubernetes' dependent variables)."""
    (secret,) = _load_all(K8S / "secret.yaml")
    container = _by_name(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for var in container["env"]:
        if "valueFrom" in var:
            env[var["name"]] = secret["stringData"][var["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], var["value"])
    return env


def test_gateway_replicas_share_one_postgresql(
    overlay: tuple[str, list], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, docs = overlay
    env = _gateway_env(docs)
    hpa = _by_name(docs, "HorizontalPodAutoscaler")["gateway"]
    assert int(env["DUALSERVE_REPLICAS"]) == hpa["spec"]["maxReplicas"] > 1
    config = tmp_path / "gateway.yaml"
    config.write_text(_by_name(docs, "ConfigMap")["gateway-config"]["data"]["gateway.yaml"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    url = load_settings(config).experiments.database_url
    assert url is not None and url.startswith("postgresql://")
    host, port = url.rsplit("@", 1)[1].split("/")[0].split(":")
    postgres = _by_name(docs, "Service")[host]
    assert int(port) in {p["port"] for p in postgres["spec"]["ports"]}
    statefulset = _by_name(docs, "StatefulSet")["postgres"]
    assert (
        postgres["spec"]["selector"].items()
        <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    )
    monkeypatch.delenv("DUALSERVE_EXPERIMENTS__DATABASE_URL")  # the same pods on SQLite
    with pytest.raises(ValidationError, match=r"replicas=10 needs experiments\.database_url"):
        load_settings(config)


# --- Prometheus Operator (components/prometheus-operator, overlays/monitoring) ------------

DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "$comment": "The subset of the ServiceMonitor CRD (monitoring.coreos.com/v1, Prometheus "
    "Operator API reference: ServiceMonitorSpec, Endpoint, NamespaceSelector) used here; a "
    "field outside it fails, so add it here from the reference when one is needed.",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def monitoring() -> list[dict[str, Any]]:
    """The monitoring overlay, built: real kustomize where available, else the Python build."""
    directory = K8S / "overlays" / "monitoring"
    built = _kustomize_build(directory)
    return built if built is not None else _python_build(directory)


def test_monitoring_overlay_is_the_gpu_overlay_plus_three_service_monitors(
    monitoring: list[dict[str, Any]],
) -> None:
    gpu = _python_build(K8S / "overlays" / "gpu")
    added = sorted(_key(d) for d in monitoring if d["kind"] == "ServiceMonitor")
    assert added == [("ServiceMonitor", n) for n in ("gateway", "tfserving", "torchserve")]
    others = sorted(
        (k, _HASH.sub("", n)) for k, n in map(_key, monitoring) if k != "ServiceMonitor"
    )
    assert others == sorted(map(_key, gpu))


def test_service_monitors_match_their_crd_schema(monitoring: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA)
    for doc in (d for d in monitoring if d["kind"] == "ServiceMonitor"):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == [], doc["metadata"]["name"]


def test_the_service_monitor_schema_catches_mistakes(monitoring: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(next(d for d in monitoring if d["kind"] == "ServiceMonitor"))
    broken["spec"]["endpoints"][0]["intervall"] = "15s"  # a typo
    broken["spec"]["endpoints"][0]["path"] = "metrics"  # not absolute
    broken["spec"]["selector"] = {"app": "gateway"}  # not a label selector
    validator = jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA)
    assert len(list(validator.iter_errors(broken))) >= 3


def test_each_service_monitor_scrapes_its_services_metrics_port_and_path(
    monitoring: list[dict[str, Any]],
) -> None:
    """The same targets as the compose stack's Prometheus (deploy/prometheus/prometheus.yml),
    reached through a named port of the one Service the selector picks, in its namespace,
    and admitted by the backends' NetworkPolicy from the monitoring namespace."""
    compose_jobs = {
        j["job_name"]: j
        for j in yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())[
            "scrape_configs"
        ]
    }
    services = [d for d in monitoring if d["kind"] == "Service"]
    policies = _by_name(monitoring, "NetworkPolicy")
    for monitor in (d for d in monitoring if d["kind"] == "ServiceMonitor"):
        name, spec = monitor["metadata"]["name"], monitor["spec"]
        wanted = spec["selector"]["matchLabels"].items()
        (service,) = [s for s in services if wanted <= s["metadata"].get("labels", {}).items()]
        assert spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
        assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        (endpoint,) = spec["endpoints"]
        job = compose_jobs[name]
        assert endpoint["path"] == job["metrics_path"], name
        assert f"{name}:{ports[endpoint['port']]}" == job["static_configs"][0]["targets"][0]
        if f"{name}-ingress" in policies:  # the backends: open to the monitoring namespace
            rules = policies[f"{name}-ingress"]["spec"]["ingress"]
            scraper = [r for r in rules if any("namespaceSelector" in f for f in r["from"])]
            assert {"port": ports[endpoint["port"]]} in scraper[0]["ports"], name
