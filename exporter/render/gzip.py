"""Compressed pieces, and the bodies (plain or gzip) streamed from them.

A rendered exposition is kept as pieces of raw deflate, each ending on a byte boundary
(``Z_SYNC_FLUSH``) and not final, so pieces compressed separately concatenate into one valid
deflate stream (the pigz technique). A gzip body is then a header, the cached pieces, the live
tail compressed at scrape time, and a trailer: one ordinary gzip member, without recompressing
what did not change. Its CRC-32 comes from per-piece keys (CRC-32 is affine in its input), so
the plain bytes are never needed for it. A plain body is inflated piece by piece while it is
sent. Either way a scrape holds at most about ``CHUNK`` bytes of body at a time, never the
whole body: memory does not grow with the number of scrapes, or of concurrent ones.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import NamedTuple

GZIP_LEVEL = 6  # level 9 costs ~1.8x the time for <1% fewer bytes on this data
LIVE_GZIP_LEVEL = 1  # the live tail is ~2 KB and compressed on every scrape
# gzip member header (RFC 1952): deflate, no flags, mtime 0, no extra flags, OS unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_EMPTY_FINAL_BLOCK = b"\x03\x00"  # a final, empty fixed-Huffman deflate block
# Bytes per write of a streamed body: small enough that concurrent scrapes cost little memory
# (and stay below glibc's mmap threshold), large enough that sends stay few.
CHUNK = 64 * 1024


def deflate_piece(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """Raw deflate of ``data`` that ends on a byte boundary and is not final."""
    if not data:
        return b""
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


def deflate_final(data: bytes) -> bytes:
    """Raw deflate of ``data`` ending the stream (the last piece of a gzip body)."""
    if not data:
        return _EMPTY_FINAL_BLOCK
    c = zlib.compressobj(LIVE_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


_ZEROS = bytes(1 << 20)  # calloc'd and only ever read: costs no resident memory


def crc_of_zeros(n: int, crc: int) -> int:
    """CRC-32 of ``crc``'s input followed by ``n`` zero bytes."""
    while n > len(_ZEROS):
        crc = zlib.crc32(_ZEROS, crc)
        n -= len(_ZEROS)
    return zlib.crc32(memoryview(_ZEROS)[:n], crc)


class Piece(NamedTuple):
    """A run of exposition bytes kept compressed only (plain bytes would cost ~6x more).

    ``key`` = crc32(data) ^ crc32(len(data) zero bytes): CRC-32 is affine, so the CRC of
    A+data is ``key ^ crc_of_zeros(len(data), crc(A))``.
    """

    z: bytes  # raw deflate, see deflate_piece
    size: int  # plain bytes
    key: int


def piece(data: bytes, level: int = GZIP_LEVEL) -> Piece:
    return Piece(deflate_piece(data, level), len(data),
                 zlib.crc32(data) ^ crc_of_zeros(len(data), 0))


def crc_and_size(pieces: Iterable[Piece]) -> tuple[int, int]:
    """(CRC-32, length) of the plain bytes of ``pieces`` one after the other."""
    crc, size = 0, 0
    for p in pieces:
        if p.size:
            crc = p.key ^ crc_of_zeros(p.size, crc)
            size += p.size
    return crc, size


def inflate(pieces: Iterable[Piece], chunk: int = CHUNK) -> Iterator[bytes]:
    """The plain bytes of ``pieces``, in parts of at most ``chunk`` bytes."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    for p in pieces:
        left = p.size
        data = d.decompress(p.z, chunk) if left else b""
        while data:
            left -= len(data)
            yield data
            # A sync-flushed piece yields all its bytes from its own input; the size says
            # when they are all out, whatever zlib still keeps in its window.
            data = d.decompress(d.unconsumed_tail, chunk) if left > 0 else b""
        if left:
            raise ValueError(f"a cached piece inflated to {p.size - left} of {p.size} bytes")


def coalesce(parts: Iterable[bytes], chunk: int = CHUNK) -> Iterator[bytes]:
    """``parts`` joined into writes of about ``chunk`` bytes; a part at least that large goes
    out alone, uncopied (cached pieces are shared, never duplicated per scrape)."""
    buf: list[bytes] = []
    n = 0
    for part in parts:
        if n and n + len(part) > chunk:
            yield b"".join(buf)
            buf, n = [], 0
        if len(part) >= chunk:
            yield part
        elif part:
            buf.append(part)
            n += len(part)
    if buf:
        yield b"".join(buf)


class Body:
    """A response body of known length (bytes), produced once, in bounded writes."""

    __slots__ = ("_chunks", "size")

    def __init__(self, size: int, chunks: Iterable[bytes]) -> None:
        self.size = size
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def __bytes__(self) -> bytes:
        return b"".join(self._chunks)


class Rendered:
    """One rendered snapshot, as compressed pieces: text and OpenMetrics share all but a few
    family headers and the tail.

    Immutable once built, so scrapes read it without a lock. The CRC-32 of each variant (for
    the gzip trailer) is computed the first time that variant is served gzipped, or ahead of
    time by ``prepare``.
    """

    __slots__ = ("_crc", "next_expiry", "om_pieces", "seconds", "text_pieces")

    def __init__(self, text_pieces: tuple[Piece, ...], om_pieces: tuple[Piece, ...],
                 seconds: float, next_expiry: float | None = None) -> None:
        self.text_pieces, self.om_pieces = text_pieces, om_pieces
        self.seconds = seconds  # wall time the render took
        # Earliest Unix time a value in this render goes stale (None: none will); the
        # re-render is scheduled for then.
        self.next_expiry = next_expiry
        self._crc: dict[bool, tuple[int, int]] = {}

    def pieces(self, openmetrics: bool) -> tuple[Piece, ...]:
        return self.om_pieces if openmetrics else self.text_pieces

    def prepare(self, openmetrics: bool) -> tuple[int, int]:
        """(CRC-32, length) of the plain body of one variant; cached."""
        got = self._crc.get(openmetrics)
        if got is None:
            got = self._crc[openmetrics] = crc_and_size(self.pieces(openmetrics))
        return got  # a racing duplicate computation is harmless

    def body(self, openmetrics: bool, gz: bool, tail: bytes = b"",
             tail_z: bytes | None = None) -> Body:
        """One variant with ``tail`` (live metrics) appended, to be streamed; ``tail_z`` is
        ``deflate_final(tail)`` if the caller has it already."""
        pieces = self.pieces(openmetrics)
        if not gz:
            size = sum(p.size for p in pieces) + len(tail)
            return Body(size, coalesce(chain(inflate(pieces), (tail,))))
        crc, size = self.prepare(openmetrics)
        trailer = struct.pack("<II", zlib.crc32(tail, crc), (size + len(tail)) & 0xFFFFFFFF)
        if tail_z is None:
            tail_z = deflate_final(tail)
        zsize = len(GZIP_HEADER) + sum(len(p.z) for p in pieces) + len(tail_z) + len(trailer)
        parts = chain((GZIP_HEADER,), (p.z for p in pieces), (tail_z, trailer))
        return Body(zsize, coalesce(parts))

    @property
    def text(self) -> bytes:
        """The whole text body without live metrics (for --once; scrapes stream instead)."""
        return bytes(self.body(False, False))

