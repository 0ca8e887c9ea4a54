"""TorchServe's inference key, given directly or read from the key file TorchServe writes.

TorchServe 0.12 rewrites `key_file.json` when it restarts or a key is replaced, so the
file is read again whenever its modification time changes, checked at most once per
`recheck_s` (a `stat` per request is a measurable cost at thousands of requests/s).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from backends.torchserve.tokens import TokenError, read_token
from gateway.core.errors import UpstreamError, UpstreamUnavailable

BACKEND = "pytorch"
logger = logging.getLogger(__name__)


class TokenSource:
    """Where the `Authorization: Bearer` key comes from; neither given = no header.

    Args:
        token: the inference key itself (wins over `token_file`).
        token_file: TorchServe's `key_file.json`, read for its `kind` key.
        kind: "inference" (prediction calls) or "management" (the catalog's status calls).
    """

    def __init__(
        self,
        token: str | None = None,
        token_file: Path | None = None,
        recheck_s: float = 1.0,
        kind: str = "inference",
    ) -> None:
        self.token = token
        self.token_file = Path(token_file) if token_file is not None else None
        self.recheck_s = recheck_s
        self.kind = kind
        self._cached: tuple[int, str] | None = None
        self._checked_at = float("-inf")

    def key(self) -> str | None:
        """The current key, or None when TorchServe runs without token authorization."""
        if self.token:
            return self.token
        if self.token_file is None:
            return None
        return self._from_file(self.token_file)

    def headers(self) -> dict[str, str]:
        key = self.key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def metadata(self) -> tuple[tuple[str, str], ...]:
        key = self.key()
        return (("authorization", f"Bearer {key}"),) if key else ()

    def _from_file(self, path: Path) -> str:
        now = time.monotonic()
        if self._cached is not None and now - self._checked_at < self.recheck_s:
            return self._cached[1]
        self._checked_at = now
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError as exc:
            if self._cached is not None:  # a stopped server removes it; the call will say so
                return self._cached[1]
            logger.warning("no TorchServe token file at %s", path)
            message = "TorchServe's token file is missing; is TorchServe running?"
            raise UpstreamUnavailable(BACKEND, message) from exc
        if self._cached is None or self._cached[0] != mtime:
            try:
                self._cached = (mtime, read_token(path, self.kind))
            except TokenError as exc:  # the path stays in the log, out of the answer
                logger.warning("%s", exc)
                raise UpstreamError(BACKEND, "TorchServe's token file is unusable") from exc
        return self._cached[1]
