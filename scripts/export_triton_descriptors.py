"""Regenerate gateway/_proto/triton.desc from the installed tritonclient.

Triton's `GRPCInferenceService` (grpc_service.proto, model_config.proto) extends the Open
Inference Protocol's core service with the methods of its extensions: ModelStreamInfer,
ModelConfig, ModelStatistics, RepositoryIndex, ... The gateway serves some of them with
these messages, loaded into a private descriptor pool of their own (`gateway._proto.triton`:
the core messages of the same names live in `oip.POOL`, and the wire format is the same).
The gateway never imports tritonclient at run time; this script does, once.
Run: .venv-clients/bin/python scripts/export_triton_descriptors.py (tritonclient lives there)
"""

from __future__ import annotations

from pathlib import Path

from descriptor_set import write_descriptor_set  # scripts/, beside this file
from tritonclient.grpc import service_pb2

OUT = Path(__file__).resolve().parent.parent / "gateway" / "_proto" / "triton.desc"


def main() -> None:
    count = write_descriptor_set(OUT, (service_pb2,))
    print(f"wrote {OUT} ({count} files)")


if __name__ == "__main__":
    main()
