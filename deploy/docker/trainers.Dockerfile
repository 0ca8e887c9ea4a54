# syntax=docker/dockerfile:1
# The trainers: the same model in TensorFlow and PyTorch, exported to a model store volume.
#
#   docker build -f deploy/docker/trainers.Dockerfile -t dualserve/trainers:0.1.0-cpu .
#   docker build -f deploy/docker/trainers.Dockerfile --build-arg VARIANT=cuda \
#       -t dualserve/trainers:0.1.0-cuda .
#   docker run --rm --gpus all -v "$PWD/model_store:/models" dualserve/trainers:0.1.0-cuda \
#       --framework both --model cnn
#
# Versions come from requirements.lock (`make lock`), used as constraints. VARIANT=cpu takes
# the lock's torch 2.13.0+cpu from the PyTorch CPU index and plain TensorFlow; VARIANT=cuda
# takes PyPI's torch 2.13.0 (its Linux wheels bundle CUDA) and `tensorflow[and-cuda]` (CUDA
# and cuDNN as pip packages), so one slim base serves both: the host only needs the NVIDIA
# driver and the NVIDIA container toolkit.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ARG VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DUALSERVE_MODEL_STORE=/models
WORKDIR /app
# Sources before install: setuptools builds the package from them. The handler under
# backends/torchserve and the wire formats under wire/ are packed into every .mar.
COPY pyproject.toml README.md requirements.lock ./
COPY trainers/ trainers/
COPY backends/ backends/
COPY wire/ wire/
RUN set -eux; \
    case "$VARIANT" in \
      cpu)  pip install --no-cache-dir --extra-index-url "$TORCH_CPU_INDEX" -c requirements.lock \
              ".[torch,tensorflow,torchserve]" ;; \
      cuda) sed 's/^torch==\([0-9.]*\)+cpu$/torch==\1/' requirements.lock > /tmp/cuda.lock; \
            pip install --no-cache-dir -c /tmp/cuda.lock ".[torch,tensorflow,torchserve]" \
              "tensorflow[and-cuda]==2.21.*" ;; \
      *)    echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac; \
    useradd --uid 10001 --create-home --shell /usr/sbin/nologin trainer; \
    mkdir -p /models && chown trainer /models
USER 10001
VOLUME ["/models"]
ENTRYPOINT ["python", "-m", "trainers"]
CMD ["--framework", "both", "--model", "mlp"]
