"""Lossless WebP (VP8L) streams written by hand, to make libwebp build many prefix-code tables or to make
a reader of the stream take many steps (RFC 9649)."""

from __future__ import annotations

import struct


class BitWriter:
    """Bits as VP8L stores them: values least significant bit first, prefix codes first bit first."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, n: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(n)]

    def code(self, value: int, n: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(n - 1, -1, -1)]

    def bytes(self) -> bytes:
        out = bytearray((len(self.bits) + 7) // 8)
        for i, bit in enumerate(self.bits):
            out[i >> 3] |= bit << (i & 7)
        return bytes(out)


def one_symbol(bw: BitWriter, symbol: int = 0) -> None:
    """A simple code of one symbol, which takes no bits to read."""
    bw.put(1, 1)
    bw.put(0, 1)
    bw.put(1, 1)
    bw.put(symbol, 8)


def flat8(bw: BitWriter, alphabet: int) -> None:
    """A normal code giving the first 256 symbols 8 bits each (the code for symbol s is s)."""
    bw.put(0, 1)
    order = (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8)
    bw.put(len(order) - 4, 4)
    for s in order:  # the code-length code: lengths 0 and 8, one bit each
        bw.put(1 if s in (0, 8) else 0, 3)
    if alphabet > 256:
        bw.put(1, 1)
        bw.put(3, 3)
        bw.put(256 - 2, 8)  # 256 lengths read, the rest 0
    else:
        bw.put(0, 1)
    for _ in range(256):
        bw.code(1, 1)  # length 8


def riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"WEBP"
    for kind, payload in chunks:
        body += kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _header(bw: BitWriter, width: int, height: int) -> None:
    bw.put(0x2F, 8)
    bw.put(width - 1, 14)
    bw.put(height - 1, 14)
    bw.put(0, 1)
    bw.put(0, 3)


def _groups_stream(bw: BitWriter, width: int, height: int, groups: int, cache_bits: int) -> None:
    """No transform; an entropy image of 4x4 tiles naming ``groups`` groups in turn; each group five
    one-symbol codes; pixels that take no bits."""
    bw.put(0, 1)
    bw.put(1, 1) if cache_bits else bw.put(0, 1)
    if cache_bits:
        bw.put(cache_bits, 4)
    bw.put(1, 1)
    bw.put(0, 3)  # meta codes, 4x4 tiles
    tiles = ((width + 3) // 4) * ((height + 3) // 4)
    bw.put(0, 1)  # the entropy image: no cache; green and red 8 bits a value, blue, alpha, distance none
    flat8(bw, 280)
    flat8(bw, 256)
    for _ in range(3):
        one_symbol(bw)
    for i in range(tiles):
        group = i % groups
        bw.code(group & 255, 8)
        bw.code(group >> 8, 8)
    for _ in range(min(groups, tiles) * 5):
        one_symbol(bw)


def groups_webp(width: int, height: int, groups: int, cache_bits: int = 0) -> bytes:
    """A lossless WebP asking libwebp for tables of ``groups`` groups (at most 65,536), whatever its size."""
    bw = BitWriter()
    _header(bw, width, height)
    _groups_stream(bw, width, height, groups, cache_bits)
    return riff([(b"VP8L", bw.bytes())])


def alpha_groups_webp(lossy: bytes, width: int, height: int, groups: int) -> bytes:
    """``lossy`` (a VP8 chunk's payload) with an alpha chunk coded losslessly, asking for ``groups`` groups."""
    bw = BitWriter()
    _groups_stream(bw, width, height, groups, 0)
    size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return riff([(b"VP8X", b"\x10\x00\x00\x00" + size), (b"ALPH", b"\x01" + bw.bytes()), (b"VP8 ", lossy)])


def literal_transform_webp(width: int, height: int) -> bytes:
    """A predictor transform on 4x4 tiles whose image is all literal pixels of 8-bit codes: four prefix codes
    to read per tile before the entropy image."""
    bw = BitWriter()
    _header(bw, width, height)
    bw.put(1, 1)
    bw.put(0, 2)
    bw.put(0, 3)  # predictor, 4x4 tiles
    bw.put(0, 1)  # no cache
    flat8(bw, 280)
    for _ in range(3):
        flat8(bw, 256)
    one_symbol(bw)
    for i in range(((width + 3) // 4) * ((height + 3) // 4)):
        for value in (i & 255, 0, 0, 255):
            bw.code(value, 8)
    bw.put(0, 1)  # no more transforms; no cache; no meta codes; then the pixels (left out)
    bw.put(0, 1)
    bw.put(0, 1)
    return riff([(b"VP8L", bw.bytes())])
