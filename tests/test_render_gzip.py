"""Compressed pieces and the bodies streamed from them: any gzip client reads one member
holding exactly the plain body, whatever the pieces, and no write exceeds the chunk bound."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.render.fast import FastRenderer
from exporter.render.gzip import CHUNK, Rendered, crc_of_zeros, inflate, piece
from tests.golden_snapshot import NOW, build_store

PARTS = st.lists(st.binary(max_size=3000) | st.sampled_from([b"", b"x" * 70_000]), max_size=8)


def rendered_of(parts: list[bytes]) -> Rendered:
    pieces = tuple(piece(p) for p in parts)
    return Rendered(pieces, pieces, 0.0)


def one_member(body: bytes) -> bytes:
    d = zlib.decompressobj(wbits=31)  # one gzip member, as a client that ignores more reads
    plain = d.decompress(body) + d.flush()
    assert d.eof and d.unused_data == b""
    return plain


@settings(max_examples=60, deadline=None)
@given(parts=PARTS, tail=st.binary(max_size=500))
def test_any_pieces_make_one_gzip_member_of_the_plain_body(parts: list[bytes],
                                                           tail: bytes) -> None:
    r = rendered_of(parts)
    gz = r.body(False, True, tail)
    plain = r.body(False, False, tail)
    gz_bytes, plain_bytes = bytes(gz), bytes(plain)
    assert plain_bytes == b"".join(parts) + tail
    assert len(plain_bytes) == plain.size
    assert len(gz_bytes) == gz.size
    assert one_member(gz_bytes) == plain_bytes
    assert gzip.decompress(gz_bytes) == plain_bytes


@pytest.mark.parametrize("openmetrics", [False, True])
@pytest.mark.parametrize("tail", [b"", b"# live\nprocess_x 1.0\n" * 50])
def test_a_rendered_snapshot_streams_the_same_body_both_ways(openmetrics: bool,
                                                              tail: bytes) -> None:
    r = FastRenderer(block_size=2)(build_store().snapshot(), NOW)
    gz = bytes(r.body(openmetrics, True, tail))
    assert one_member(gz) == bytes(r.body(openmetrics, False, tail))


def test_writes_are_bounded_whatever_the_body_size() -> None:
    """A plain body is inflated in parts of at most CHUNK bytes; a gzip body's writes are
    at most CHUNK bytes, or one cached piece as it is (never a copy of the whole body)."""
    big = bytes(range(256)) * 40_000  # ~10 MB, one piece
    small = [b"line %d\n" % i for i in range(5000)]  # many small pieces
    r = rendered_of([big, *small])
    plain_writes = [len(c) for c in r.body(False, False, b"tail")]
    assert sum(plain_writes) == len(big) + sum(map(len, small)) + 4
    assert max(plain_writes) <= CHUNK
    assert len(plain_writes) < 2 * (len(big) + sum(map(len, small))) / CHUNK + 2  # not tiny
    biggest_piece = max(len(p.z) for p in r.text_pieces)
    assert max(len(c) for c in r.body(False, True)) <= max(CHUNK, biggest_piece)


def test_inflate_yields_each_piece_completely() -> None:
    data = [b"a" * 200_000, b"", b"b" * 10, bytes(range(256)) * 500]
    out = list(inflate([piece(d) for d in data], chunk=1000))
    assert b"".join(out) == b"".join(data)
    assert max(map(len, out)) <= 1000


@given(st.integers(0, 3 << 20), st.integers(0, 2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_crc_of_zeros_is_the_crc_of_that_many_zero_bytes(n: int, crc: int) -> None:
    assert crc_of_zeros(n, crc) == zlib.crc32(bytes(n), crc)


def test_prepare_gives_the_checksum_and_length_of_the_plain_body() -> None:
    r = rendered_of([b"abc", b"", b"def"])
    assert r.prepare(False) == r.prepare(True) == (zlib.crc32(b"abcdef"), 6)
