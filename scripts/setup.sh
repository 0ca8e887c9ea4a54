#!/usr/bin/env bash
# Idempotent setup: a .venv filled from pyproject.toml (redone only when that file
# changes) and Java 17 for TorchServe (installed through apt when missing and possible).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
key=$(sha256sum pyproject.toml | cut -c1-16)
stamp="$VENV/.dualserve-setup-$key"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: dualserve needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
  exit 1
fi

if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies into $VENV (first run takes a few minutes)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  pip_args=(--quiet --disable-pip-version-check)
  # This machine keeps a CPU build of torch on disk; pip takes it from there.
  [ -d /opt/wheels ] && pip_args+=(--find-links /opt/wheels)
  "$VENV/bin/python" -m pip install "${pip_args[@]}" -e '.[all,dev]' 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "setup: pip install failed" >&2; exit 1; }
  # Test clients for the v2 ingress. tritonclient pins protobuf<7, greenlet<3.4 and
  # ml-dtypes<=0.5.4 (TensorFlow 2.21 brings 0.6; `pip check` says so), which
  # clash with grpcio-tools and locust; the parts the tests use run on the newer ones.
  "$VENV/bin/python" -m pip install "${pip_args[@]}" --no-deps \
    'tritonclient[grpc,http]==2.73.0' 'python-rapidjson==1.25' \
    || { echo "setup: pip install tritonclient failed" >&2; exit 1; }
  rm -f "$VENV"/.dualserve-setup-*
  touch "$stamp"
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
