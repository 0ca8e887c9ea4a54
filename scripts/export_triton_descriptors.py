"""Regenerate gateway/_proto/triton.desc from the installed tritonclient.

Triton's `GRPCInferenceService` (grpc_service.proto, model_config.proto) extends the Open
Inference Protocol's core service with the methods of its extensions: ModelStreamInfer,
ModelConfig, ModelStatistics, RepositoryIndex, ... The gateway serves some of them with
these messages, loaded into a private descriptor pool of their own (`gateway._proto.triton`:
the core messages of the same names live in `oip.POOL`, and the wire format is the same).
The gateway never imports tritonclient at run time; this script does, once.
Run: .venv/bin/python scripts/export_triton_descriptors.py
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from tritonclient.grpc import service_pb2

OUT = Path(__file__).resolve().parent.parent / "gateway" / "_proto" / "triton.desc"


def _collect(
    descriptor: FileDescriptor, seen: dict[str, descriptor_pb2.FileDescriptorProto]
) -> None:
    if descriptor.name in seen:
        return
    for dependency in descriptor.dependencies:
        _collect(dependency, seen)
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    seen[descriptor.name] = proto  # dependencies first: the pool adds files in this order


def main() -> None:
    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    _collect(service_pb2.DESCRIPTOR, seen)
    file_set = descriptor_pb2.FileDescriptorSet(file=list(seen.values()))
    OUT.write_bytes(file_set.SerializeToString(deterministic=True))
    print(f"wrote {OUT} ({len(seen)} files)")


if __name__ == "__main__":
    main()
