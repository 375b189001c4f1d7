"""Bounded Content-Encoding decoding (gzip, deflate, br), pure and synchronous.

httpx decodes bodies too, but it does not bound how much one network chunk may expand to (a 64 KiB
chunk of a gzip bomb can become 64 MiB at once) and it does not notice a truncated gzip/deflate
stream. Here every decoder yields its output in pieces of about ``PIECE`` bytes, so the caller can
count DECODED bytes and stop at its cap, and ``finish()`` raises when the stream ended early.

::

    decoder = BodyDecoder(response.headers.get("content-encoding"))
    for piece in decoder.feed(raw_chunk): ...   # repeatedly
    for piece in decoder.finish(): ...          # at the end; raises on truncation

Multi-member gzip bodies decode their first member only (trailing data is ignored, like browsers).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli

PIECE = 64 * 1024
SUPPORTED = ("gzip", "deflate", "br")


class ContentDecodingError(ValueError):
    """Corrupt, truncated or unsupported content encoding (crawler.fetch.client turns it into DecodeError)."""


class _Stage(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> Iterator[bytes]: ...


class _Zlib:
    """gzip (``wbits=31``) or zlib/raw deflate, output bounded by ``PIECE`` per step."""

    def __init__(self, name: str, wbits: int) -> None:
        self._name = name
        self._wbits = wbits
        self._inflater = zlib.decompressobj(wbits)
        self._seen = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if data and not self._seen:
            self._seen = True
            self._choose_window(data)
        try:
            pending = data
            while not self._inflater.eof:
                out = self._inflater.decompress(pending, PIECE)
                pending = self._inflater.unconsumed_tail
                if not out:
                    return
                yield out
        except zlib.error as exc:
            raise ContentDecodingError(f"corrupt {self._name} data: {exc}") from exc

    def _choose_window(self, first: bytes) -> None:
        """deflate is sent both zlib-wrapped (RFC) and raw (old IIS): look at the zlib header."""
        if self._name == "deflate" and not _looks_like_zlib(first):
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)

    def finish(self) -> Iterator[bytes]:
        if self._seen and not self._inflater.eof:
            raise ContentDecodingError(f"truncated {self._name} data (the stream ended early)")
        return iter(())


def _looks_like_zlib(data: bytes) -> bool:
    if len(data) < 2:
        return True
    return data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


class _Brotli:
    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()
        self._seen = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        self._seen = True
        try:
            out = self._decompressor.process(data, output_buffer_limit=PIECE)
            while out:
                yield out
                if self._decompressor.is_finished():
                    return
                out = self._decompressor.process(b"", output_buffer_limit=PIECE)
        except brotli.error as exc:
            raise ContentDecodingError(f"corrupt br data: {exc}") from exc

    def finish(self) -> Iterator[bytes]:
        if self._seen and not self._decompressor.is_finished():
            raise ContentDecodingError("truncated br data (the stream ended early)")
        return iter(())


def _stage(name: str) -> _Stage:
    if name in ("gzip", "x-gzip"):
        return _Zlib("gzip", zlib.MAX_WBITS | 16)
    if name == "deflate":
        return _Zlib("deflate", zlib.MAX_WBITS)
    if name == "br":
        return _Brotli()
    raise ContentDecodingError(f"unsupported Content-Encoding {name!r} (supported: {', '.join(SUPPORTED)})")


class BodyDecoder:
    """Undo a Content-Encoding header value ("gzip", "br", "deflate, gzip", "identity"...)."""

    def __init__(self, content_encoding: str | None) -> None:
        names = [name.strip().lower() for name in (content_encoding or "").split(",")]
        # Codings are listed in the order they were applied; undo them in reverse.
        self._stages = [_stage(name) for name in reversed(names) if name and name != "identity"]

    @property
    def identity(self) -> bool:
        return not self._stages

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._through(0, data)

    def finish(self) -> Iterator[bytes]:
        for index, stage in enumerate(self._stages):
            for piece in stage.finish():
                yield from self._through(index + 1, piece)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._stages):
            if data:
                yield data
            return
        for piece in self._stages[index].feed(data):
            yield from self._through(index + 1, piece)
