"""TF Serving's messages without importing TensorFlow.

`tfserving.desc` is a FileDescriptorSet exported from tensorflow-serving-api by
scripts/export_tfserving_descriptors.py. It is loaded into a private descriptor pool, so
these classes never clash with the real `_pb2` modules when both live in one process;
the wire format is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_POOL = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(
    (Path(__file__).parent / "tfserving.desc").read_bytes()
).file:
    _POOL.Add(_file)


def _message(full_name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


PredictRequest = _message("tensorflow.serving.PredictRequest")
PredictResponse = _message("tensorflow.serving.PredictResponse")
GetModelMetadataRequest = _message("tensorflow.serving.GetModelMetadataRequest")
GetModelMetadataResponse = _message("tensorflow.serving.GetModelMetadataResponse")
GetModelStatusRequest = _message("tensorflow.serving.GetModelStatusRequest")
GetModelStatusResponse = _message("tensorflow.serving.GetModelStatusResponse")
SignatureDefMap = _message("tensorflow.serving.SignatureDefMap")
TensorProto = _message("tensorflow.TensorProto")

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"

# Classify, Regress and MultiInference (answered for the predict-only signatures served).
ClassificationRequest = _message("tensorflow.serving.ClassificationRequest")
ClassificationResponse = _message("tensorflow.serving.ClassificationResponse")
RegressionRequest = _message("tensorflow.serving.RegressionRequest")
RegressionResponse = _message("tensorflow.serving.RegressionResponse")
MultiInferenceRequest = _message("tensorflow.serving.MultiInferenceRequest")
MultiInferenceResponse = _message("tensorflow.serving.MultiInferenceResponse")
