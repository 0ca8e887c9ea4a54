#!/usr/bin/env bash
# Regenerate the lock files from pyproject.toml (`make lock`); commit what it changes.
#
#   requirements.lock                        .[all,dev]: what scripts/setup.sh and CI install
#   requirements-clients.lock                the official v2 test clients (.venv-clients/)
#   deploy/docker/requirements-gateway.lock  the gateway image, constrained to requirements.lock
#
# uv resolves (it runs in .venv-tools/, made here when missing); pip installs. uv does not
# look at this machine's wheel folder unless told: --find-links /opt/wheels makes it take the
# CPU build of torch 2.13.0 there (torch==2.13.0+cpu, which has no nvidia-* dependencies)
# instead of PyPI's CUDA build and its GBs of CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
uv=.venv-tools/bin/uv
if [ ! -x "$uv" ] || [ "$("$uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv .venv-tools
  .venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
wheels=()
[ -d /opt/wheels ] && wheels=(--find-links /opt/wheels)
[ -n "${WHEELS:-}" ] && wheels=(--find-links "$WHEELS")
# deploy/docker/requirements-gateway.in comes from `python -m deploy.render` (checked by the tests).
compile=("$uv" pip compile --quiet --python-version 3.11 --custom-compile-command "make lock")

"${compile[@]}" "${wheels[@]}" pyproject.toml --extra all --extra dev -o requirements.lock
"${compile[@]}" requirements-clients.in -o requirements-clients.lock
"${compile[@]}" "${wheels[@]}" deploy/docker/requirements-gateway.in -c requirements.lock \
  --no-annotate -o deploy/docker/requirements-gateway.lock
echo "lock: requirements.lock ($(grep -c '==' requirements.lock) pins)," \
  "requirements-clients.lock ($(grep -c '==' requirements-clients.lock))," \
  "deploy/docker/requirements-gateway.lock ($(grep -c '==' deploy/docker/requirements-gateway.lock))"
