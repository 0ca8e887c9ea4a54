#!/usr/bin/env bash
# Idempotent setup: .venv installed from requirements.lock (exact pins, redone only when the
# lock or pyproject.toml changes), the official test clients in .venv-clients/ from
# requirements-clients.lock, and Java 17 for TorchServe (installed through apt when missing
# and possible). `make lock` regenerates the locks (scripts/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
CLIENTS_VENV="${CLIENTS_VENV:-.venv-clients}"
key=$(cat pyproject.toml requirements.lock requirements-clients.lock | sha256sum | cut -c1-16)
stamp="$VENV/.dualserve-setup-$key"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: dualserve needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
  exit 1
fi

pip_args=(--quiet --disable-pip-version-check)
# requirements.lock pins torch==2.13.0+cpu (no nvidia-* packages). This machine keeps that
# wheel on disk; elsewhere it comes from PyTorch's CPU index.
if [ -d /opt/wheels ]; then
  pip_args+=(--find-links /opt/wheels)
else
  pip_args+=(--extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}")
fi
quiet_pip() {  # pip, without the warnings about the machine's absent local index folders
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies into $VENV from requirements.lock (first run takes a few minutes)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # Exactly the lock: --no-deps so nothing unpinned comes along, the project itself built
  # with the lock's setuptools (no isolated build environment), then anything installed
  # before that the lock does not name is removed, so every install's `pip freeze` is the same.
  quiet_pip "$VENV/bin/python" -m pip install "${pip_args[@]}" --no-deps -r requirements.lock \
    || { echo "setup: pip install -r requirements.lock failed" >&2; exit 1; }
  quiet_pip "$VENV/bin/python" -m pip install "${pip_args[@]}" --no-deps --no-build-isolation -e . \
    || { echo "setup: pip install -e . failed" >&2; exit 1; }
  extra=$("$VENV/bin/python" scripts/unlocked.py requirements.lock)
  if [ -n "$extra" ]; then
    echo "setup: removing packages that requirements.lock does not name: $extra"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip uninstall --quiet --yes $extra
  fi
  "$VENV/bin/python" -m pip check || { echo "setup: pip check failed in $VENV" >&2; exit 1; }
  rm -f "$VENV"/.dualserve-setup-*
  touch "$stamp"
fi

# The official v2 test clients (tritonclient and its pins), in a venv of their own so that
# the project's `pip check` stays clean; tests/triton_clients.py runs them there.
clients_stamp="$CLIENTS_VENV/.dualserve-clients-$(sha256sum requirements-clients.lock | cut -c1-16)"
if [ ! -f "$clients_stamp" ]; then
  echo "setup: installing the v2 test clients into $CLIENTS_VENV from requirements-clients.lock"
  [ -x "$CLIENTS_VENV/bin/python" ] || "$PYTHON" -m venv "$CLIENTS_VENV"
  quiet_pip "$CLIENTS_VENV/bin/python" -m pip install "${pip_args[@]}" --no-deps \
    -r requirements-clients.lock \
    || { echo "setup: pip install -r requirements-clients.lock failed" >&2; exit 1; }
  "$CLIENTS_VENV/bin/python" -m pip check || { echo "setup: pip check failed in $CLIENTS_VENV" >&2; exit 1; }
  rm -f "$CLIENTS_VENV"/.dualserve-clients-*
  touch "$clients_stamp"
fi

java_ok() { command -v java >/dev/null 2>&1 && java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; }
if ! java_ok; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Java 17 for TorchServe (apt-get install openjdk-17-jre-headless)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "setup: TorchServe needs Java 17+; install it (e.g. 'sudo apt-get install openjdk-17-jre-headless')" >&2
  fi
fi
java_ok || echo "setup: warning: Java 17+ not found; TorchServe will not start" >&2

# The load tests' nginx baseline and the report's headless-browser check (Debian packages).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing nginx and chromium for the load tests (apt-get install nginx chromium)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx chromium >/dev/null
  else
    echo "setup: the load tests want nginx (baseline) and chromium (report check); install them" \
      "(e.g. 'sudo apt-get install nginx chromium'); without them those parts are skipped" >&2
  fi
fi
# PostgreSQL for the prediction log's PostgreSQL tests (they start a throwaway cluster).
pg_ok() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
if ! pg_ok; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing PostgreSQL for the prediction log tests (apt-get install postgresql)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: the PostgreSQL tests need Debian's postgresql (e.g. 'sudo apt-get install postgresql')" >&2
  fi
fi
pg_ok || echo "setup: warning: PostgreSQL (initdb) not found; its tests will fail" >&2
echo "setup: ready ($VENV, $("$VENV/bin/python" -V))"
