"""Request bodies in a content coding (RFC 9110 §8.4): gzip, deflate, limits on the
decoded size, refusal of other codings."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator

import pytest

from wire.content_coding import (
    BodyTooLarge,
    CorruptBody,
    UnsupportedCoding,
    decode_body,
    request_coding,
)

BODY = b'{"instances": [[0, 1, 2, 3]]}' * 50


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def decode(data: bytes, coding: str, limit: int = 1 << 20) -> bytes:
    return asyncio.run(decode_body(_chunks(data), coding, limit))


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_gzip_and_deflate_bodies_decode_in_small_chunks(coding: str, compress: object) -> None:
    assert callable(compress)
    assert decode(compress(BODY), coding) == BODY


def test_the_limit_is_on_the_decoded_size_and_decoding_stops_there() -> None:
    """A 10 MB body of spaces gzips to about 10 kB: far under any limit compressed."""
    bomb = gzip.compress(b" " * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(BodyTooLarge, match="more than the limit of 65536 bytes"):
        decode(bomb, "gzip", limit=65536)
    assert decode(gzip.compress(b" " * 65536), "gzip", limit=65536) == b" " * 65536


@pytest.mark.parametrize(
    ("data", "coding", "message"),
    [
        (b"not gzip at all", "gzip", "not valid gzip data"),
        (gzip.compress(BODY)[:-12], "gzip", "not valid gzip data: truncated"),
        (gzip.compress(BODY), "deflate", "not valid deflate data"),
    ],
)
def test_corrupt_bodies_are_named(data: bytes, coding: str, message: str) -> None:
    with pytest.raises(CorruptBody, match=message):
        decode(data, coding)


@pytest.mark.parametrize(
    ("header", "coding"), [(None, None), ("identity", None), (" GZIP ", "gzip")]
)
def test_request_coding_reads_the_header(header: str | None, coding: str | None) -> None:
    assert request_coding(header) == coding


@pytest.mark.parametrize("header", ["br", "zstd", "compress", "gzip, deflate"])
def test_other_codings_are_unsupported(header: str) -> None:
    with pytest.raises(UnsupportedCoding, match="send gzip, deflate or identity"):
        request_coding(header)
