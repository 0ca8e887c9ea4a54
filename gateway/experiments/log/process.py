"""The gateway's end of the prediction log's writer process (`log_writer`).

One child per gateway process, started with `asyncio.create_subprocess_exec`, fed over
its stdin and acknowledged over its stdout through the event loop's own non-blocking
pipes: no thread, so no GIL hand-over, on the write path. One batch is in flight at a
time (the log buffers the next one meanwhile), so an acknowledgement means "this batch is
committed" and `PredictionLog.flush()` keeps its meaning. A writer that died (killed,
crashed) fails the batch in flight (counted) and is started again for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.experiments.log.records import PredictionRecord, encode_batch
from gateway.experiments.log.writer import ACK, HEADER

logger = logging.getLogger(__name__)
_START_S = 30.0  # a cold interpreter on a busy machine; it is ready in ~50 ms


class WriterGone(ConnectionError):
    """The writer process ended before acknowledging a batch."""


class WriterProcess:
    """Batches out to `python -m gateway.experiments.log.writer`, acknowledgements back.

    Args:
        database_url: as `experiments.database_url` (None = SQLite in `data_dir`).
        data_dir: the SQLite log's folder (a file: the writer is another process).
    """

    def __init__(self, database_url: str | None, data_dir: Path | None) -> None:
        target = {"database_url": database_url, "data_dir": data_dir and str(data_dir)}
        self._command = (sys.executable, "-m", "gateway.experiments.log.writer", json.dumps(target))
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the writer and wait until it is ready (signals ignored, database open).

        Raises:
            WriterGone: it ended first (it logs why), or was not ready in `_START_S`.
        """
        self._proc = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert self._proc.stdout is not None
        try:
            await asyncio.wait_for(self._proc.stdout.readexactly(ACK.size), _START_S)
        except (TimeoutError, asyncio.IncompleteReadError) as exc:
            await self._reap()
            raise WriterGone("the prediction log writer did not start") from exc

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def write(self, records: Sequence[PredictionRecord]) -> tuple[int, int, int]:
        """Send one batch (top-1 taken: `top1.summarise`) and wait for its acknowledgement:
        (rows written, records failed, records unwritten because the database is
        unavailable).

        Raises:
            WriterGone: the writer ended (it is started again at the next call).
        """
        if self._proc is None or self._proc.returncode is not None:
            await self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        payload = encode_batch(records)
        try:
            proc.stdin.write(HEADER.pack(len(payload)))
            proc.stdin.write(payload)
            await proc.stdin.drain()
            written, failed, unwritten = ACK.unpack(await proc.stdout.readexactly(ACK.size))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            await self._reap()
            raise WriterGone(f"the prediction log writer ended ({proc.returncode})") from exc
        return int(written), int(failed), int(unwritten)

    async def close(self, timeout: float = 5.0) -> None:
        """End the writer: it writes what it was sent, then exits (killed after `timeout`)."""
        proc, self._proc = self._proc, None
        if await end_child(proc, timeout):
            logger.error("the prediction log writer did not end in %.1f s: killed", timeout)

    async def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def end_child(proc: asyncio.subprocess.Process | None, timeout: float) -> bool:
    """End a child that serves on its stdin (the log's writer, the analyst): close its
    stdin, so it finishes what it was sent and exits; kill it after `timeout` seconds.
    Returns True when it had to be killed."""
    if proc is None or proc.returncode is not None:
        return False
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return True
    return False
