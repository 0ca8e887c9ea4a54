"""Request bodies sent in a content coding (RFC 9110 §8.4), for every dualserve REST server.

TF Serving's REST server accepts `Content-Encoding: gzip` request bodies, and Triton
clients offer gzip and deflate (`request_compression_algorithm`). The gateway and the
bundled TF Serving server both decode them here, as the body streams in: the size limit
applies to the decoded body and decoding stops as soon as it is exceeded, so a small
body that inflates to gigabytes (a "zip bomb") costs at most `limit` bytes of memory.

"deflate" is the zlib format (RFC 1950), as RFC 9110 §8.4.1.2 defines it and
`zlib.compress` (tritonclient) writes it. Any other coding is refused (415); a server
then lists what it accepts in `Accept-Encoding` (RFC 9110 §12.5.3).

Errors are `ValueError`s each server maps to its own error type (413, 415, 400).
Standard library only.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable

ACCEPT_ENCODING = "gzip, deflate"
"""The value of the `Accept-Encoding` header a 415 answer carries."""
_WINDOW_BITS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}


class CodingError(ValueError):
    """A request body that cannot be accepted in its content coding."""


class UnsupportedCoding(CodingError):
    """A coding other than gzip, deflate and identity (HTTP 415)."""


class BodyTooLarge(CodingError):
    """The decoded body exceeds the limit (HTTP 413)."""


class CorruptBody(CodingError):
    """The body is not valid data of its coding, or is truncated (HTTP 400)."""


def request_coding(content_encoding: str | None) -> str | None:
    """The coding named by a `Content-Encoding` header; None for identity (no header).

    Raises:
        UnsupportedCoding: any coding but gzip, x-gzip, deflate and identity.
    """
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding not in _WINDOW_BITS:
        raise UnsupportedCoding(
            f"unsupported Content-Encoding '{coding}'; send {ACCEPT_ENCODING} or identity"
        )
    return coding


async def decode_body(chunks: AsyncIterable[bytes], coding: str, limit: int) -> bytes:
    """The decoded body of `chunks` (the raw body as it arrives), at most `limit` bytes.

    Raises:
        BodyTooLarge: the decoded body would exceed `limit` bytes.
        CorruptBody: invalid or truncated `coding` data.
    """
    decoder = zlib.decompressobj(_WINDOW_BITS[coding])
    decoded = bytearray()
    try:
        async for chunk in chunks:
            data = chunk
            while data:
                decoded += decoder.decompress(data, limit + 1 - len(decoded))
                if len(decoded) > limit:
                    raise BodyTooLarge(
                        f"request body decodes to more than the limit of {limit} bytes"
                    )
                data = decoder.unconsumed_tail
    except zlib.error as exc:
        raise CorruptBody(f"request body is not valid {coding} data: {exc}") from None
    if not decoder.eof:
        raise CorruptBody(f"request body is not valid {coding} data: truncated")
    return bytes(decoded)
