"""The images: the gateway's build context and contents, checked without a container engine.

The gateway image copies a handful of first-party paths and installs its lock (pinned from
requirements generated from pyproject.toml); here those exact paths are copied into a scratch folder and the gateway
is built from them in a subprocess, which proves nothing else is needed at run time.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from deploy import render
from tests.unit.gateway.gateway_fakes import make_store

REPO = render.DEPLOY.parent
GATEWAY_DOCKERFILE = REPO / "deploy/docker/gateway.Dockerfile"
FIRST_PARTY = ("gateway", "backends", "trainers")


def _instructions(dockerfile: Path) -> list[list[str]]:
    """Instructions as word lists, continuation lines joined, comments dropped."""
    text = "\n".join(
        line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    return [line.split() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def _copied_sources(dockerfile: Path) -> list[str]:
    """Sources of every COPY from the build context (not from another stage)."""
    sources = []
    for words in _instructions(dockerfile):
        if words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    return sources


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: the last match wins, `!` re-includes,
    a pattern matching a directory excludes everything below it, `**/` matches any depth."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").rstrip("/")
        options = [pattern, pattern.removeprefix("**/")] if pattern.startswith("**/") else [pattern]
        deep = [p for p in prefixes for o in options if fnmatch.fnmatchcase(p, o)]
        names = [
            p for p in parts if pattern.startswith("**/") and fnmatch.fnmatchcase(p, options[1])
        ]
        if deep or names:
            result = not negate
    return result


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        "model_store/tensorflow/digits-mlp/1/saved_model.pb",
        "model_store/torchserve/digits-mlp.mar",
        "model_store/torchserve/digits-mlp.v1.mar",
        "model_store/manifest.json",
        "model_store/reports/digits-mlp-v1.md",
        ".venv/bin/python",
        "tests/unit/deploy/test_deploy_images.py",
        "runs/digits-mlp/v1/events",
        "reports/report.html",
        "run/torchserve/key_file.json",
        "gateway/__pycache__/app.cpython-311.pyc",
        "deploy/secrets/admin_token",
        ".git/HEAD",
    ],
)
def test_build_context_excludes_artifacts_virtualenvs_tests_and_runs(path: str) -> None:
    assert _ignored(path, _dockerignore())


def test_everything_the_gateway_image_copies_is_in_the_context() -> None:
    patterns = _dockerignore()
    for source in _copied_sources(GATEWAY_DOCKERFILE):
        assert (REPO / source).exists(), source
        assert not _ignored(source.rstrip("/"), patterns), source
    assert not _ignored("pyproject.toml", patterns) and not _ignored("README.md", patterns)


def test_gateway_image_is_slim_and_non_root() -> None:
    instructions = _instructions(GATEWAY_DOCKERFILE)
    users = [w[1] for w in instructions if w[0] == "USER"]
    assert users and users[-1] not in ("root", "0")
    sources = _copied_sources(GATEWAY_DOCKERFILE)
    assert not any(s.startswith(("tests", "model_store", "loadtest", "dualserve")) for s in sources)
    assert "trainers/" not in sources  # only the manifest schema, not the training code
    entrypoint = next(w for w in instructions if w[0] == "ENTRYPOINT")
    assert json.loads(" ".join(entrypoint[1:])) == ["python", "-m", "gateway"]


def _scratch_copy(dest: Path) -> None:
    """The files the gateway image's COPY instructions put under /app."""
    for source in _copied_sources(GATEWAY_DOCKERFILE):
        if source.startswith("deploy/"):
            continue  # the requirements file, used in the build stage only
        target = dest / source
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, target)


PROBE = """
import json, sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder

ALLOWED = set(json.loads(sys.argv[3]))

class ImageOnly(MetaPathFinder):
    # Installed packages outside the image's requirements fail to import, as they would there.
    def find_spec(self, name, path=None, target=None):
        if path is not None or name in ALLOWED:
            return None
        spec = PathFinder.find_spec(name)
        if spec is not None and "site-packages" in (spec.origin or str(spec.submodule_search_locations)):
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)
        return None

sys.meta_path.insert(0, ImageOnly())
import uvicorn, uvloop, httptools
from gateway.__main__ import cli
from gateway.app import create_app
from gateway.settings import load_settings
settings = load_settings(sys.argv[1], model_store=sys.argv[2])
app = create_app(settings)
modules = {n: getattr(m, "__file__", None) or "" for n, m in list(sys.modules.items())}
print(json.dumps(modules))
"""


def _requirement_closure(requirements: list[str]) -> set[str]:
    """Every distribution pip would install for `requirements` (markers evaluated here)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        for dep in md.requires(name) or []:
            parsed = Requirement(dep)
            extras = req.extras or {""}
            if parsed.marker is None or any(parsed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(parsed)
    return seen


def _importable(distributions: set[str]) -> list[str]:
    """Top-level module names the given distributions provide (plus first-party packages)."""
    owners = md.packages_distributions()
    return sorted(
        {m for m, dists in owners.items() if any(_norm(d) in distributions for d in dists)}
        | set(FIRST_PARTY)
    )


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def test_gateway_runs_from_exactly_what_the_image_holds(tmp_path: Path) -> None:
    """First-party code only from the copied files, packages only from the requirements."""
    app_dir, store = tmp_path / "app", make_store(tmp_path / "store")
    _scratch_copy(app_dir)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(render.gateway_yaml(render.COMPOSE)))
    lines = (REPO / "deploy/docker/requirements-gateway.lock").read_text().splitlines()
    pins = [r for r in (line.strip() for line in lines) if r and not r.startswith("#")]
    allowed = _importable(_requirement_closure(pins))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(config), str(store), json.dumps(allowed)],
        capture_output=True, text=True, timeout=120, cwd=app_dir,
        env={"PYTHONPATH": str(app_dir), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    modules: dict[str, str] = json.loads(result.stdout)
    first_party = {n: f for n, f in modules.items() if n.split(".")[0] in FIRST_PARTY}
    outside = [n for n, f in first_party.items() if f and not f.startswith(str(app_dir))]
    assert first_party and outside == [], f"imported from outside the image: {outside}"
