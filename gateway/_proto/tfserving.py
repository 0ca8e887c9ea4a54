"""TF Serving's messages without importing TensorFlow.

`tfserving.desc` is a FileDescriptorSet exported from tensorflow-serving-api by
scripts/export_tfserving_descriptors.py. It is loaded into a private descriptor pool, so
these classes never clash with the real `_pb2` modules when both live in one process;
the wire format is the same.
"""

from __future__ import annotations

from google.protobuf import descriptor_pool

from gateway._proto import load_descriptors

_POOL = descriptor_pool.DescriptorPool()
_message = load_descriptors(_POOL, "tfserving.desc")


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
