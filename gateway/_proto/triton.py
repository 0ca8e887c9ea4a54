"""Triton's extension messages of `inference.GRPCInferenceService`, without tritonclient.

`triton.desc` is a FileDescriptorSet exported from tritonclient's grpc_service.proto and
model_config.proto by scripts/export_triton_descriptors.py. It is loaded into a private
pool of its own: `oip.POOL` already holds the core messages under the same names (the wire
format is the same, so a core `ModelInferRequest`'s bytes parse as Triton's).
"""

from __future__ import annotations

from google.protobuf import descriptor_pool

from gateway._proto import load_descriptors

POOL = descriptor_pool.DescriptorPool()
_message = load_descriptors(POOL, "triton.desc")


ModelInferResponse = _message("inference.ModelInferResponse")
ModelStreamInferResponse = _message("inference.ModelStreamInferResponse")
ModelStatisticsRequest = _message("inference.ModelStatisticsRequest")
ModelStatisticsResponse = _message("inference.ModelStatisticsResponse")
ModelConfigRequest = _message("inference.ModelConfigRequest")
ModelConfigResponse = _message("inference.ModelConfigResponse")
RepositoryIndexRequest = _message("inference.RepositoryIndexRequest")
RepositoryIndexResponse = _message("inference.RepositoryIndexResponse")
