# syntax=docker/dockerfile:1
# The dualserve gateway: slim, non-root, only what `python -m gateway` imports at run time.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t dualserve/gateway:0.1.0 .
#
# Build context: the repository root; .dockerignore keeps model artifacts, virtualenvs,
# tests and run directories out of it. No TensorFlow, no torch, no scikit-learn: the
# gateway speaks to the backends over the wire (see README "Production (GPU)" for sizes).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
# The lock (`make lock`): every package pinned, at requirements.lock's versions, of what
# deploy/render.py derives from pyproject.toml (base dependencies minus the trainers' and
# launchers', scikit-learn and psutil, plus the `gateway` extra). Wheels only, nothing more.
COPY deploy/docker/requirements-gateway.lock /tmp/requirements.txt
RUN pip install --no-cache-dir --only-binary=:all: --no-deps --prefix=/install \
        -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app
COPY --from=deps /install /usr/local
WORKDIR /app
# The gateway package, and the first-party modules it imports from elsewhere: the wire
# formats it shares with the backends (TF Serving's JSON, content codings, tensor frames),
# TorchServe's token file reader and gRPC stubs, and the manifest schema.
COPY gateway/ gateway/
COPY wire/ wire/
COPY backends/__init__.py backends/py.typed backends/
COPY backends/torchserve/__init__.py backends/torchserve/tokens.py backends/torchserve/
COPY backends/torchserve/_proto/ backends/torchserve/_proto/
COPY trainers/__init__.py trainers/errors.py trainers/manifest.py trainers/
# /var/lib/dualserve holds the prediction log (SQLite); compose runs the gateway as uid 1000
# to read TorchServe's key file, hence a sticky world-writable folder rather than a chown.
RUN python -m compileall -q /app \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin dualserve \
    && install -d -m 1777 /var/lib/dualserve
USER 10001
VOLUME /var/lib/dualserve
# REST (TF Serving and v2 JSON, admin, /metrics) and gRPC (PredictionService, OIP)
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["python", "-m", "gateway"]
CMD ["--config", "/etc/dualserve/gateway.yaml", "--log-level", "info"]
