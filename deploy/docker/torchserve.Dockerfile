# syntax=docker/dockerfile:1
# The official TorchServe image plus the one package its workers import but do not ship.
#
#   docker build -f deploy/docker/torchserve.Dockerfile -t dualserve/torchserve:0.12.0-gpu .
#   docker build -f deploy/docker/torchserve.Dockerfile \
#       --build-arg TORCHSERVE_IMAGE=pytorch/torchserve:0.12.0-cpu -t dualserve/torchserve:0.12.0-cpu .
#
# TorchServe 0.12.0 imports yaml in every worker without declaring it; without it workers die
# at import and requests hang until a timeout (the same reason pyproject's torchserve extra
# lists pyyaml), at the version requirements.lock pins. The dualserve handler itself needs only numpy and torch, already in the image;
# the .mar carries handler.py, tensor_frames.py, tfserving_json.py,
# json_text.py and signature.json.
ARG TORCHSERVE_IMAGE=pytorch/torchserve:0.12.0-gpu
FROM ${TORCHSERVE_IMAGE}
USER root
COPY requirements.lock /tmp/requirements.lock
# keys/ is TorchServe's working directory in compose: it writes key_file.json (mode 0600)
# there, on a volume the gateway reads; it must belong to model-server before a volume copies it.
RUN pip install --no-cache-dir -c /tmp/requirements.lock pyyaml \
    && mkdir -p /home/model-server/keys /home/model-server/config \
    && chown model-server /home/model-server/keys /home/model-server/config
USER model-server
WORKDIR /home/model-server/keys
