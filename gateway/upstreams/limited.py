"""An upstream with a bound on its calls in flight (`admission.upstream_max_in_flight`).

Every call to one backend kind (both arms' upstream calls, shadow copies included) holds
a slot of its own `Admission` (`gateway.edge.admission`, which explains the sizing), so
one slow backend cannot take every slot of the worker.
"""

from __future__ import annotations

from gateway.core.types import InferRequest, InferResponse
from gateway.edge.admission import Admission
from gateway.upstreams.base import Upstream


class LimitedUpstream:
    """An `Upstream` with a bound on its calls in flight; past it, `Overloaded`.

    Args:
        inner: the backend client.
        limit: calls in flight at most through this client (this worker).
    """

    def __init__(self, inner: Upstream, limit: int) -> None:
        self.inner = inner
        self.framework = inner.framework
        self.admission = Admission(
            limit, what=f"upstream {self.framework}", setting="admission.upstream_max_in_flight"
        )

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        """The inner client's answer (Overloaded, 429, when every slot is taken)."""
        return await self.admission.hold(self.inner.infer, request, timeout)

    async def ready(self, model: str) -> bool:
        return await self.inner.ready(model)

    async def aclose(self) -> None:
        await self.inner.aclose()
