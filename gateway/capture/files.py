"""The capture store on disk: Parquet files per model, rotated by size and age, with
retention. Used from the capture's writer thread only.

Layout: `<dir>/<model>/capture-<UTC start>-<pid>-<seq>.parquet`. A file being written is
named `....parquet.part` and renamed when it is closed (Parquet's footer is written at
close), so every `*.parquet` file is complete; readers (`pandas.read_parquet`, DuckDB's
`read_parquet('<dir>/*/*.parquet')`, `gateway.capture.reader`) skip the `.part` files.
A file is closed when it passes `max_file_bytes`, when it is `max_file_age_s` old, when
the records' schema changes (other input names or dtypes), and when the gateway stops.
Retention deletes closed files older than `retention_hours` (by modification time), then
the oldest while all of them together pass `max_total_bytes`; it runs at every close and
at least every `_RETENTION_EVERY_S`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.capture.records import CaptureRecord, conform, input_signature, table_of

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)
_RETENTION_EVERY_S = 60.0
PART = ".part"


def _safe(model: str) -> str:
    """A model name as a folder name (catalog names are already plain)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model) or "_"


@dataclass
class _OpenFile:
    path: Path
    writer: Any  # pyarrow.parquet.ParquetWriter
    schema: pa.Schema
    opened: float  # time.monotonic()
    rows: int = 0


class CaptureFiles:
    """The open file of each model, and the store's rotation and retention.

    Args:
        root: the capture folder (made if missing).
        max_file_bytes, max_file_age_s: close a file past either.
        retention_s: closed files older than this (modification time) are deleted.
        max_total_bytes: the oldest closed files are deleted past this (None: no cap).
        clock: wall-clock seconds (tests pass their own, for retention).
    """

    def __init__(
        self,
        root: Path,
        max_file_bytes: int,
        max_file_age_s: float,
        retention_s: float,
        max_total_bytes: int | None,
        clock: Any = time.time,
    ) -> None:
        import pyarrow.parquet  # noqa: F401  (fail at start, naming the package, if missing)

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._max_bytes, self._max_age_s = max_file_bytes, max_file_age_s
        self._retention_s, self._max_total = retention_s, max_total_bytes
        self._clock = clock
        self._open: dict[str, _OpenFile] = {}
        self._seq = 0
        self._retained_at = -_RETENTION_EVERY_S
        self.files_closed = 0
        self.files_deleted = 0

    def write(self, records: list[CaptureRecord]) -> int:
        """Append `records` (any models) to their models' files; the rows written."""
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[CaptureRecord]] = {}
        for record in records:
            groups.setdefault((record.model, input_signature(record)), []).append(record)
        written = 0
        for (model, _), group in groups.items():
            written += self._append(model, table_of(group))
        return written

    def _append(self, model: str, table: pa.Table) -> int:
        current = self._open.get(model)
        if current is not None:
            fitted = conform(table, current.schema)
            if fitted is None:
                self._close(model)
                current = None
            else:
                table = fitted
        if current is None:
            current = self._open_file(model, table.schema)
        current.writer.write_table(table)
        current.rows += table.num_rows
        if current.path.stat().st_size >= self._max_bytes:
            self._close(model)
        return table.num_rows

    def _open_file(self, model: str, schema: pa.Schema) -> _OpenFile:
        import pyarrow.parquet as pq

        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        folder = self.root / _safe(model)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"capture-{stamp}-{os.getpid()}-{self._seq}.parquet{PART}"
        schema = schema.with_metadata({b"dualserve.capture": b"1"})
        writer = pq.ParquetWriter(
            str(path), schema, compression="snappy"
        )  # 3.5x cheaper than zstd here
        opened = _OpenFile(path, writer, schema, time.monotonic())
        self._open[model] = opened
        return opened

    def _close(self, model: str) -> None:
        current = self._open.pop(model)
        current.writer.close()
        current.path.rename(current.path.with_name(current.path.name[: -len(PART)]))
        self.files_closed += 1
        self.retain(force=True)

    def tick(self) -> None:
        """Close the files past their age; run retention when it is due."""
        now = time.monotonic()
        for model in [m for m, f in self._open.items() if now - f.opened >= self._max_age_s]:
            self._close(model)
        self.retain()

    def close_all(self) -> None:
        """Close every open file (each becomes a complete `.parquet`)."""
        for model in list(self._open):
            self._close(model)

    def closed_files(self) -> list[Path]:
        """Every complete file in the store, oldest first (by modification time)."""
        files = [p for p in self.root.glob("*/*.parquet") if p.is_file()]
        return sorted(files, key=lambda p: p.stat().st_mtime)

    def retain(self, force: bool = False) -> None:
        """Delete closed files past the retention age, then the oldest past the size cap."""
        now = time.monotonic()
        if not force and now - self._retained_at < _RETENTION_EVERY_S:
            return
        self._retained_at = now
        cutoff = self._clock() - self._retention_s
        kept: list[tuple[Path, int]] = []
        for path in self.closed_files():
            try:
                stat = path.stat()
                if stat.st_mtime < cutoff:
                    path.unlink()
                    self.files_deleted += 1
                else:
                    kept.append((path, stat.st_size))
            except FileNotFoundError:  # another worker's retention took it
                continue
        total = sum(size for _, size in kept)
        for path, size in kept:
            if self._max_total is None or total <= self._max_total:
                break
            path.unlink(missing_ok=True)
            self.files_deleted += 1
            total -= size
