"""Server and model metadata, the same for REST and gRPC (KServe's Open Inference
Protocol, "Server Metadata" and "Model Metadata")."""

from __future__ import annotations

from typing import Any

from backends.oip.repository import PLATFORM, ModelRepository, ServedVersion

SERVER_NAME = "dualserve-oip"
SERVER_VERSION = "1"
EXTENSIONS = ("binary_tensor_data", "model_repository")


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def model_metadata(served: ServedVersion, repository: ModelRepository) -> dict[str, Any]:
    """`versions` lists every version the repository serves now (version discovery)."""
    versions = [
        str(e.version) for e in repository.index() if e.name == served.name and e.state == "READY"
    ]
    return {
        "name": served.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": [_tensor(m) for m in served.inputs],
        "outputs": [_tensor(m) for m in served.outputs],
    }


def _tensor(meta: Any) -> dict[str, Any]:
    return {"name": meta.name, "datatype": meta.datatype, "shape": list(meta.shape)}
