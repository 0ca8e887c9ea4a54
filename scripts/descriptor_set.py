"""Write protobuf modules' descriptors, with every file they depend on, as one
FileDescriptorSet (the export scripts' shared step; the gateway loads these sets into
private descriptor pools, `gateway._proto`, so it never imports the generating packages)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor


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


def write_descriptor_set(out: Path, modules: tuple[ModuleType, ...]) -> int:
    """Write the `_pb2` `modules`' files and their dependencies to `out` (deterministic
    bytes, dependencies first); returns the number of files written."""
    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for module in modules:
        _collect(module.DESCRIPTOR, seen)
    file_set = descriptor_pb2.FileDescriptorSet(file=list(seen.values()))
    out.write_bytes(file_set.SerializeToString(deterministic=True))
    return len(seen)
