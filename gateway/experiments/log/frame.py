"""The prediction log as columns (numpy arrays), for the analysis and the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.experiments.log.records import Row
from gateway.experiments.log.store import RECORD_COLUMNS

_INDEX = {name: i for i, name in enumerate(RECORD_COLUMNS)}


def _column(rows: Sequence[Row], name: str, dtype: type) -> np.ndarray:
    i = _INDEX[name]
    if dtype is float:
        return np.array([np.nan if r[i] is None else float(r[i]) for r in rows], dtype=float)
    return np.array([r[i] for r in rows], dtype=object)


@dataclass(frozen=True)
class LogFrame:
    """One array per column; missing numbers are NaN."""

    request_id: np.ndarray
    kind: np.ndarray
    arm: np.ndarray
    ts: np.ndarray
    latency_ms: np.ndarray
    status: np.ndarray
    top1: np.ndarray
    label: np.ndarray
    agreed: np.ndarray
    version: np.ndarray
    unit: np.ndarray  # int64 code of the routing key (the request id when it had none)

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> LogFrame:
        objects = ("request_id", "kind", "arm")
        keys = [r[_INDEX["key_hash"]] or f"request:{r[_INDEX['request_id']]}" for r in rows]
        _, unit = np.unique(np.array(keys, dtype=object), return_inverse=True)
        return cls(
            unit=unit.astype(np.int64).reshape(-1),
            **{name: _column(rows, name, object) for name in objects},
            **{
                name: _column(rows, name, float)
                for name in ("ts", "latency_ms", "status", "top1", "label", "agreed", "version")
            },
        )

    def served(self, arm: str) -> np.ndarray:
        """Mask of requests this arm answered (or failed to)."""
        return (self.kind == "serve") & (self.arm == arm)

    def shadowed(self, arm: str) -> np.ndarray:
        return (self.kind == "shadow") & (self.arm == arm)

    def select(self, mask: np.ndarray) -> LogFrame:
        """The rows where `mask` holds, as a frame (unit codes kept)."""
        return LogFrame(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})

    def arms(self) -> list[str]:
        return sorted({str(a) for a in self.arm[self.kind == "serve"]})
