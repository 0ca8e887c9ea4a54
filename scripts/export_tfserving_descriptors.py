"""Regenerate gateway/_proto/tfserving.desc from the installed tensorflow-serving-api.

The gateway speaks TF Serving's protobuf messages but must not import TensorFlow (its
_pb2 modules import the whole TF runtime, ~7 s). So the message descriptors are exported
once, here, as a FileDescriptorSet, and loaded into a private descriptor pool at run time.
Run: .venv/bin/python scripts/export_tfserving_descriptors.py
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_service_pb2,
)

OUT = Path(__file__).resolve().parent.parent / "gateway" / "_proto" / "tfserving.desc"
ROOTS = (
    predict_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2,
    prediction_service_pb2,
)


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
    for module in ROOTS:
        _collect(module.DESCRIPTOR, seen)
    file_set = descriptor_pb2.FileDescriptorSet(file=list(seen.values()))
    OUT.write_bytes(file_set.SerializeToString(deterministic=True))
    print(f"wrote {OUT} ({len(seen)} files)")


if __name__ == "__main__":
    main()
