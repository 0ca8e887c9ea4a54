"""Protocol buffer definitions the gateway speaks, loaded without their heavy packages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_HERE = Path(__file__).parent


def load_descriptors(pool: descriptor_pool.DescriptorPool, desc_file: str) -> Callable[[str], Any]:
    """Add the FileDescriptorSet `desc_file` (beside this file, exported by a script in
    scripts/) to `pool`; returns the pool's message-class lookup by full name (e.g.
    `"inference.ModelInferRequest"`; raises KeyError for a name the pool lacks)."""
    for file in descriptor_pb2.FileDescriptorSet.FromString((_HERE / desc_file).read_bytes()).file:
        pool.Add(file)

    def message(full_name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))

    return message
