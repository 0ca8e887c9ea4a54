"""Regenerate gateway/_proto/tfserving.desc from the installed tensorflow-serving-api.

The gateway speaks TF Serving's protobuf messages but must not import TensorFlow (its
_pb2 modules import the whole TF runtime, ~7 s). So the message descriptors are exported
once, here, as a FileDescriptorSet, and loaded into a private descriptor pool at run time.
Run: .venv/bin/python scripts/export_tfserving_descriptors.py
"""

from __future__ import annotations

from pathlib import Path

from descriptor_set import write_descriptor_set  # scripts/, beside this file
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


def main() -> None:
    count = write_descriptor_set(OUT, ROOTS)
    print(f"wrote {OUT} ({count} files)")


if __name__ == "__main__":
    main()
