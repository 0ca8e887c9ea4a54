"""TF Serving for dualserve: the launcher API and the bundled TF Serving-compatible server.

Importing this package is cheap (no TensorFlow): the server's modules import TF only when
`python -m backends.tfserving` runs.
"""

from backends.tfserving.launcher import (
    TFServingEndpoints,
    TFServingSettings,
    start_tfserving,
    stop_tfserving,
    tfserving_status,
)

__all__ = [
    "TFServingEndpoints",
    "TFServingSettings",
    "start_tfserving",
    "stop_tfserving",
    "tfserving_status",
]
