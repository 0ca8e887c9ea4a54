"""The lock files against pyproject.toml and against each other, offline.

requirements.lock is what scripts/setup.sh and CI install (`--no-deps`, exactly);
deploy/docker/requirements-gateway.lock is the gateway image's; requirements-clients.lock
is the official test clients' venv. `make lock` (scripts/lock.sh) writes all three.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sysconfig
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[3]
LOCK = REPO / "requirements.lock"
GATEWAY_LOCK = REPO / "deploy/docker/requirements-gateway.lock"
GATEWAY_IN = REPO / "deploy/docker/requirements-gateway.in"
CLIENTS_LOCK = REPO / "requirements-clients.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)$")


def pins(lock: Path) -> dict[str, str]:
    """name -> version of every requirement line; each must be an exact `==` pin."""
    out: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{lock.name}: not an exact pin: {line!r}"
        out[canonicalize_name(match["name"])] = match["version"]
    return out


def _project() -> dict:
    return dict(tomllib.loads((REPO / "pyproject.toml").read_text())["project"])


def _project_requirements() -> list[Requirement]:
    """Base dependencies and every extra's, the self-reference `dualserve[...]` left out."""
    project = _project()
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    reqs = [Requirement(r) for r in [*project["dependencies"], *extras]]
    return [r for r in reqs if canonicalize_name(r.name) != "dualserve"]


@pytest.mark.parametrize("lock", [LOCK, GATEWAY_LOCK, CLIENTS_LOCK], ids=lambda p: p.name)
def test_every_lock_line_is_an_exact_pin(lock: Path) -> None:
    assert len(pins(lock)) > 10


def test_the_lock_satisfies_every_requirement_in_pyproject() -> None:
    """A pyproject.toml edit without `make lock` fails here, naming the requirement."""
    locked = pins(LOCK)
    for req in _project_requirements():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is not in requirements.lock: run `make lock`"
        version = Version(locked[name])
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {name}=={version}, pyproject.toml wants {req}: run `make lock`"
        )


def test_the_lock_takes_the_cpu_torch_and_no_cuda_libraries() -> None:
    locked = pins(LOCK)
    assert locked["torch"].endswith("+cpu"), locked["torch"]
    assert not [n for n in locked if n.startswith("nvidia-")]


def test_the_official_clients_are_in_their_own_lock_only() -> None:
    clients, project = pins(CLIENTS_LOCK), pins(LOCK)
    assert clients["tritonclient"] == "2.73.0" and "python-rapidjson" in clients
    assert "tritonclient" not in project and "python-rapidjson" not in project


def test_the_gateway_lock_agrees_with_the_project_lock() -> None:
    gateway, project = pins(GATEWAY_LOCK), pins(LOCK)
    assert {n: v for n, v in gateway.items() if project.get(n) != v} == {}
    assert gateway.keys().isdisjoint(
        {"statsmodels", "pandas", "patsy", "formulaic", "aiohttp", "scikit-learn", "torch",
         "tensorflow", "psutil"}
    )  # fmt: skip


def test_the_gateway_lock_is_exactly_the_closure_of_its_requirements() -> None:
    """What pip would install for requirements-gateway.in, from the installed packages'
    own metadata (the venv is installed from requirements.lock, so the versions agree)."""
    wanted = [
        Requirement(line)
        for line in GATEWAY_IN.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r, frozenset(r.extras or {""})) for r in wanted]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for dep in md.requires(name) or []:
            parsed = Requirement(dep)
            if parsed.marker is None or any(parsed.marker.evaluate({"extra": e}) for e in extras):
                todo.append((parsed, frozenset(parsed.extras or {""})))
    closure = {name for name, _ in seen}
    assert closure == set(pins(GATEWAY_LOCK))


def test_the_installed_venv_has_every_locked_version() -> None:
    """scripts/setup.sh installs requirements.lock exactly; a drifted venv fails here."""
    # The venv's own site-packages only: setuptools (imported by torch's inductor in an
    # earlier test) appends its vendored packaging and wheel to sys.path.
    site = [str(Path(sysconfig.get_paths()["purelib"]))]
    installed: dict[str, str] = {
        canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions(path=site)
    }
    drift = {n: (v, installed.get(n)) for n, v in pins(LOCK).items() if installed.get(n) != v}
    assert drift == {}, "the venv differs from requirements.lock (locked, installed): " + str(drift)
