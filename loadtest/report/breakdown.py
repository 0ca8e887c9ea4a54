"""Where the time of one request went, per target at the fixed load, side by side.

From the client's mean latency down: the backend's own queue and compute time (its metrics,
`loadtest.server_clock`), the rest of the backend's request time, the gateway's own share
(`Server-Timing` `gateway;dur`, routing and re-encoding), the wire between gateway and
backend (`upstream;dur` minus the backend's request time: HTTP or gRPC handling on both
sides and loopback), and what is left (the client, the network, the gateway's ingress
decoding and encoding, which `Server-Timing` does not count). Means, in ms; n/a where a
figure is unknown (a 50/50 split or shadow mixes backends; TorchServe does not count gRPC
calls).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.report.tables import at_fixed, fmt_ms
from loadtest.results import Summary


@dataclass(frozen=True)
class Breakdown:
    """One target's mean request time split by where it was spent (ms, nan if unknown)."""

    model: str
    protocol: str
    target: str
    load: str
    client_ms: float
    queue_ms: float
    compute_ms: float
    server_other_ms: float
    gateway_ms: float
    wire_ms: float
    rest_ms: float

    def parts(self) -> dict[str, float]:
        """The stacked parts (name -> ms), nan ones as 0, for the plot."""
        named = {
            "backend queue": self.queue_ms,
            "backend compute": self.compute_ms,
            "backend other": self.server_other_ms,
            "gateway": self.gateway_ms,
            "gateway-backend wire": self.wire_ms,
            "client, network, ingress": self.rest_ms,
        }
        return {k: 0.0 if math.isnan(v) else max(v, 0.0) for k, v in named.items()}


def _nan0(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def breakdown(s: Summary) -> Breakdown:
    """Split `s`'s mean latency; through the gateway, its Server-Timing bounds the parts."""
    through_gateway = s.route == "gateway"
    server = s.server_ms
    gateway = s.gateway_ms if through_gateway else math.nan
    wire = s.upstream_ms - server if through_gateway else math.nan
    inner = s.upstream_ms if through_gateway else server
    rest = s.mean_ms - _nan0(gateway) - inner
    return Breakdown(
        model=s.model,
        protocol=s.protocol,
        target=s.target,
        load=s.load,
        client_ms=s.mean_ms,
        queue_ms=s.server_queue_ms,
        compute_ms=s.server_compute_ms,
        server_other_ms=max(server - _nan0(s.server_queue_ms) - _nan0(s.server_compute_ms), 0.0)
        if not math.isnan(server)
        else math.nan,
        gateway_ms=gateway,
        wire_ms=wire,
        rest_ms=rest,
    )


def breakdowns(summaries: list[Summary], fixed: int) -> list[Breakdown]:
    """One `Breakdown` per (model, protocol, target), at the fixed load."""
    keys = dict.fromkeys((s.model, s.protocol, s.target) for s in summaries)
    out = []
    for model, protocol, target in keys:
        rows = [
            s for s in summaries if (s.model, s.protocol, s.target) == (model, protocol, target)
        ]
        here = at_fixed(rows, fixed)
        if here is not None:
            out.append(breakdown(here))
    return out


BREAKDOWN_COLUMNS = [
    "model",
    "protocol",
    "target",
    "load",
    "client mean ms",
    "backend queue",
    "backend compute",
    "backend other",
    "gateway (Server-Timing)",
    "gateway-backend wire",
    "client, network, ingress",
]


def breakdown_cells(b: Breakdown) -> list[str]:
    return [
        b.model,
        b.protocol,
        b.target,
        b.load,
        fmt_ms(b.client_ms),
        fmt_ms(b.queue_ms),
        fmt_ms(b.compute_ms),
        fmt_ms(b.server_other_ms),
        fmt_ms(b.gateway_ms),
        fmt_ms(b.wire_ms),
        fmt_ms(b.rest_ms),
    ]
