#!/usr/bin/env bash
# Regenerate TorchServe's gRPC stubs into backends/torchserve/_proto/.
#
# The .proto files come from the installed TorchServe jar, so the stubs always match the
# server that runs. Needs grpcio-tools (dev only): pip install grpcio-tools==1.85.1.
# The generated code imports google.rpc.status_pb2 (googleapis-common-protos).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="$ROOT/backends/torchserve/_proto"
JAR="$("$PY" -c 'import os, ts; print(os.path.join(os.path.dirname(ts.__file__), "frontend", "model-server.jar"))')"
[ -f "$JAR" ] || { echo "TorchServe jar not found at $JAR; install torchserve==0.12.0" >&2; exit 1; }
"$PY" -c 'import grpc_tools' 2>/dev/null || {
  echo "grpcio-tools is missing: $PY -m pip install grpcio-tools==1.85.1" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# proto/*.proto are TorchServe's; google/rpc/status.proto (imported by inference.proto)
# ships in the same jar and is only needed to compile, not generated (it comes from
# googleapis-common-protos at run time).
unzip -q -o "$JAR" 'proto/inference.proto' 'proto/management.proto' 'google/rpc/status.proto' -d "$WORK"

mkdir -p "$OUT"
rm -f "$OUT"/*_pb2.py "$OUT"/*_pb2.pyi "$OUT"/*_pb2_grpc.py
"$PY" -m grpc_tools.protoc \
  -I "$WORK/proto" -I "$WORK" \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  "$WORK/proto/inference.proto" "$WORK/proto/management.proto"

# protoc writes top-level imports ("import inference_pb2"); make them package-relative.
sed -i -E 's/^import (inference|management)_pb2 as /from . import \1_pb2 as /' "$OUT"/*_pb2_grpc.py

cat > "$OUT/__init__.py" <<'PY'
"""Generated TorchServe 0.12 gRPC stubs (scripts/gen_protos.sh); do not edit by hand."""
PY
echo "wrote $(ls "$OUT" | tr '\n' ' ')"

# The Open Inference Protocol's gRPC API for the gateway's ingress, as a descriptor set
# (gateway/_proto/oip.desc) loaded into the gateway's private pool (gateway/_proto/oip.py).
# A descriptor set, not _pb2 modules: tritonclient registers the same `inference.*` names
# in protobuf's default pool, and two registrations of one name clash in one process.
# TorchServe ships the proto under package org.pytorch.serve.grpc.openinference; clients
# (tritonclient, KServe) call `inference.GRPCInferenceService`, so the package is renamed.
GW_OUT="$ROOT/gateway/_proto"
unzip -q -o "$JAR" 'proto/open_inference_grpc.proto' -d "$WORK"
sed -i -E 's/^package org\.pytorch\.serve\.grpc\.openinference;/package inference;/; /^option java_/d' \
  "$WORK/proto/open_inference_grpc.proto"
"$PY" -m grpc_tools.protoc -I "$WORK/proto" \
  --descriptor_set_out="$GW_OUT/oip.desc" "$WORK/proto/open_inference_grpc.proto"
echo "wrote $GW_OUT/oip.desc"
