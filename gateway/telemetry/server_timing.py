"""What a prediction cost, on every reply: the W3C `Server-Timing` header's value.

`gateway;dur=0.412, upstream;dur=2.930`: milliseconds (Server Timing, W3C Working Draft,
section 3, `server-timing-param` `dur`). `upstream` is the upstream client's own measure
of the backend call (bytes out to bytes in, `InferResponse.timings["upstream"]`);
`gateway` is the data plane's time for the request (`timings["total"]`: routing, the
upstream request's encoding and the answer's decoding, metrics) minus the upstream's. The
ingress's own decoding and encoding of the client's body happen outside the data plane
and are not counted. REST replies carry it as the `Server-Timing` header, gRPC replies as
`server-timing` trailing metadata, both built here.

Users of Triton (triton-inference-server/server issue 6692) and of LLM gateways ask for
exactly this split: is the time spent in the model server or in front of it?
"""

from __future__ import annotations

from collections.abc import Mapping

HEADER = "Server-Timing"
METADATA_KEY = "server-timing"  # gRPC metadata keys are lower case


def server_timing(timings: Mapping[str, float]) -> str:
    """The `Server-Timing` value for an `InferResponse.timings` (seconds).

    Args:
        timings: `total` (the data plane's time) and `upstream` (the backend call's), in
            seconds; a missing entry counts as 0.

    Returns:
        `gateway;dur=<ms>, upstream;dur=<ms>`, three decimals; the gateway's share is
        never negative.
    """
    upstream = timings.get("upstream", 0.0)
    gateway = max(timings.get("total", upstream) - upstream, 0.0)
    return f"gateway;dur={gateway * 1000:.3f}, upstream;dur={upstream * 1000:.3f}"
