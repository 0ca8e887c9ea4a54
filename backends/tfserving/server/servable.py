"""One loaded model version: a SavedModel, its signatures, and a thread-safe `run`.

The only module (with warmup and the gRPC codec) that imports TensorFlow. Signatures come
from `saved_model.pb` itself, so names, dtypes and shapes are exactly what TF Serving
reports in its metadata.
"""

# ruff: noqa: E402  (TensorFlow is first imported through import_tensorflow, below)

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainers.tf_quiet import import_tensorflow

import_tensorflow()  # TensorFlow's start-up noise stays out of the log

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from backends.tfserving.server.errors import InternalError
from backends.tfserving.server.signature import SignatureInfo, TensorInfo

SAVED_MODEL_FILE = "saved_model.pb"


class Servable:
    """A SavedModel version ready to serve; callable from any thread."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        self.name = name
        self.version = version
        self.path = Path(path)
        self.signature_defs = read_signature_defs(self.path)
        self.signatures = {k: to_signature_info(k, v) for k, v in self.signature_defs.items()}
        self._loaded = tf.saved_model.load(str(self.path))
        self._functions = {k: self._loaded.signatures[k] for k in self.signatures}

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run one signature on numpy inputs (already validated); returns the chosen outputs."""
        function = self._functions[signature]
        try:
            result = function(**{k: tf.convert_to_tensor(v) for k, v in inputs.items()})
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise InternalError(f"{self.name} version {self.version}: {message}") from None
        return {alias: result[alias].numpy() for alias in outputs}

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        """The `SignatureDefMap` GetModelMetadata answers with."""
        proto = get_model_metadata_pb2.SignatureDefMap()
        for key, value in self.signature_defs.items():
            proto.signature_def[key].CopyFrom(value)
        return proto

    def metadata_json(self) -> dict[str, Any]:
        """The `signature_def` metadata as TF Serving's REST API prints it."""
        return json_format.MessageToDict(
            self.signature_def_map(),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )


def read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The serving MetaGraph's signatures, without TF's internal `__saved_model_init_op`."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / SAVED_MODEL_FILE).read_bytes())
    graphs = [g for g in saved.meta_graphs if "serve" in g.meta_info_def.tags]
    if not graphs:
        raise InternalError(f"{path}: no MetaGraph tagged 'serve'")
    defs = graphs[0].signature_def
    return {k: defs[k] for k in sorted(defs) if not k.startswith("__")}


def to_signature_info(name: str, proto: meta_graph_pb2.SignatureDef) -> SignatureInfo:
    return SignatureInfo(
        name=name,
        inputs={k: _tensor_info(k, v) for k, v in proto.inputs.items()},
        outputs={k: _tensor_info(k, v) for k, v in proto.outputs.items()},
        method_name=proto.method_name,
    )


def _tensor_info(alias: str, proto: meta_graph_pb2.TensorInfo) -> TensorInfo:
    dtype = tf.dtypes.as_dtype(proto.dtype)
    shape = proto.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    tf_dtype = types_pb2.DataType.Name(proto.dtype)
    return TensorInfo(name=alias, dtype=numpy_dtype, tf_dtype=tf_dtype, shape=dims)
