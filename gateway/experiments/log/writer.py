"""The prediction log's writer process: rows in, SQL out, outside the gateway's GIL.

    python -m gateway.experiments.log.writer '{"database_url": ..., "data_dir": ...}'

The gateway (`gateway.experiments.log.process`) starts one per worker process and sends
it batches of `PredictionRecord`s (top-1 taken, `records.encode_batch`, each frame a
4-byte big-endian length and the payload) on stdin; the writer turns each into its row
(`row_of`: the routing key hashed, the latency in milliseconds), inserts every batch in one
transaction and answers each batch on stdout with one frame (`ACK`: rows written, records
failed, records unwritten because the database is unavailable: the gateway keeps those and
sends them again), in order, after one `ACK(0, 0, 0)` that says it is ready. It connects
at the first batch and again after any connection error (`Database`), so it starts, and
stays, while the database is down. It ignores SIGTERM and
SIGINT (a `stop` signals the whole process group, and the gateway's drain still has
records to send) and exits when stdin closes.

Why a process (issue 15): a writer thread takes the GIL for the rows' Python work and
parameter binding, and retakes it around every SQLite statement, so it competes with the
event loop; a process does not. Measured (benchmarks.experiments.log_handoff, and the gateway at
c=16 side by side): the two cost the same CPU per request within the noise of a shared
2-core machine (both ~40-55 us a request, most of it SQLite's insert and commit, the same
in either); the process keeps the gateway's interpreter free of the writer's work.
This module imports nothing heavy (no numpy), so the writer starts in ~50 ms.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from gateway.control.database import LOG_TIMEOUTS, Database, StoreUnavailable, open_database
from gateway.experiments.log.records import (
    COLUMNS,
    COMMIT_BOUND_S,
    LOOK_LAG_S,
    PredictionRecord,
    Row,
    decode_batch,
    row_of,
)

logger = logging.getLogger(__name__)
HEADER = struct.Struct("!I")
ACK = struct.Struct("!III")  # rows written, records failed, records unwritten (store down)
_ROWS_PER_INSERT = 64  # 64 x 14 parameters, far below every engine's limit


def insert_rows(db: Database, rows: Sequence[Row]) -> None:
    """Insert `rows` in one transaction; a request id and kind already logged is skipped.

    Each row's `logged_at` is the database's clock at the insert, and the transaction
    commits within `COMMIT_BOUND_S` of its start or rolls back (`StoreUnavailable`: the
    batch is sent again): the contract the incremental looks read by (`records`).

    Multi-row INSERTs, not executemany: the sqlite3 module drops and retakes the GIL
    around every statement step, and each retake stalls the gateway's event loop
    (measured: a row-at-a-time writer thread cost the loop 11-24% of its time; 64 rows
    per statement, ~0%).
    """
    began = time.monotonic()
    with db.transaction(within_s=COMMIT_BOUND_S) as cursor:
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            sql = _insert_sql(db.placeholder, db.now_sql, len(chunk))
            cursor.execute(sql, [value for row in chunk for value in row])
    if (took := time.monotonic() - began) > LOOK_LAG_S:  # the COMMIT itself waited
        logger.warning(
            "prediction log: %d rows committed %.1f s after their logged_at (over %.0f s):"
            " the rollout controller reads them at its next whole read of the step",
            len(rows), took, LOOK_LAG_S,
        )  # fmt: skip


@functools.cache
def _insert_sql(placeholder: str, now_sql: str, rows: int) -> str:
    one = f"({', '.join([placeholder] * len(COLUMNS))}, {now_sql})"
    return (
        f"INSERT INTO predictions ({', '.join(COLUMNS)}, logged_at)"
        f" VALUES {', '.join([one] * rows)}"
        " ON CONFLICT (request_id, kind) DO NOTHING"
    )


def write_records(db: Database, records: Sequence[PredictionRecord]) -> tuple[int, int, int]:
    """Convert and insert one batch: (rows written, records failed, records unwritten).
    A malformed record is logged and skipped (failed); an unavailable database leaves the
    whole batch unwritten (to be sent again); any other database error fails it."""
    rows: list[Row] = []
    for record in records:
        try:
            rows.append(row_of(record))
        except Exception:
            logger.exception(
                "prediction log record %r is malformed", getattr(record, "request_id", None)
            )
    try:
        if rows:
            insert_rows(db, rows)
    except StoreUnavailable as exc:
        logger.warning("prediction log: %s; %d records wait", exc.message, len(records))
        return 0, 0, len(records)
    except Exception:
        logger.exception("prediction log write of %d rows failed", len(rows))
        return 0, len(records), 0
    return len(rows), len(records) - len(rows), 0


def serve(db: Database, source: BinaryIO, sink: BinaryIO) -> None:
    """Answer every batch frame of `source` with an `ACK` frame on `sink`, until EOF."""
    while header := source.read(HEADER.size):
        if len(header) < HEADER.size:
            return
        payload = source.read(HEADER.unpack(header)[0])
        try:
            records = decode_batch(payload)
        except Exception:
            logger.exception("prediction log: an unreadable batch")
            records, written, failed, unwritten = None, 0, 1, 0
        if records is not None:
            written, failed, unwritten = write_records(db, records)
        sink.write(ACK.pack(written, failed, unwritten))
        sink.flush()


def main(argv: Sequence[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)  # the gateway's drain decides when we end
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s log-writer %(message)s")
    target = json.loads(argv[0])
    data_dir = target["data_dir"]
    folder = None if data_dir is None else Path(data_dir)
    db = open_database(target["database_url"], folder, LOG_TIMEOUTS, lazy=True)
    try:
        sys.stdout.buffer.write(ACK.pack(0, 0, 0))  # ready: signals ignored, database open
        sys.stdout.buffer.flush()
        serve(db, sys.stdin.buffer, sys.stdout.buffer)
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
