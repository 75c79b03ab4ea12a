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


def _groups_payload(width: int, height: int, groups: int, header: bool) -> bytes:
    bw = BitWriter()
    if header:
        _header(bw, width, height)
    _groups_stream(bw, width, height, groups, 0)
    return bw.bytes()


def _size24(width: int, height: int) -> bytes:
    return (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


def animation(width: int, height: int, frames: list[tuple[tuple[int, int], list[tuple[bytes, bytes]]]],
              alpha: bool = False) -> bytes:
    """An animated WebP: each frame an ANMF of the given size holding the given chunks (none: an empty one)."""
    chunks = [(b"VP8X", bytes([0x02 | (0x10 if alpha else 0), 0, 0, 0]) + _size24(width, height)),
              (b"ANIM", struct.pack("<IH", 0, 0))]
    for (w, h), inner in frames:
        payload = b"\x00" * 6 + _size24(w, h) + (100).to_bytes(3, "little") + b"\x00"
        for kind, data in inner:
            payload += kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)
        chunks.append((b"ANMF", payload))
    return riff(chunks)


def hidden_frame_webp(width: int, height: int, groups: int) -> bytes:
    """An empty first frame (libwebp's demuxer drops it), then a lossless one asking for ``groups`` groups."""
    return animation(width, height, [((width, height), []),
                                     ((width, height), [(b"VP8L", _groups_payload(width, height, groups, True))])])


def frame_alpha_webp(lossy: bytes, width: int, height: int, groups: int) -> bytes:
    """A frame whose header says 1x1 holding a ``width`` x ``height`` lossy picture and a lossless alpha of
    ``groups`` groups: libwebp decodes the alpha at the picture's own size."""
    inner = [(b"ALPH", b"\x01" + _groups_payload(width, height, groups, False)), (b"VP8 ", lossy)]
    return animation(width, height, [((1, 1), inner)], alpha=True)


def far_copies_webp(width: int, height: int, copies: int) -> bytes:
    """An entropy image filled by copies of 4096 values, ending in ``copies`` copies of one value from as far
    back as the image allows: each costs a reader that copies all it looks back over that much."""
    tiles = ((width + 3) // 4) * ((height + 3) // 4)
    far = tiles - copies
    bw = BitWriter()
    _header(bw, width, height)
    bw.put(0, 1)  # no transform
    bw.put(0, 1)  # no cache
    bw.put(1, 1)
    bw.put(0, 3)  # meta codes, 4x4 tiles
    bw.put(0, 1)  # the entropy image: no cache
    green = {0: 0, 256: 1, 257: 2, 279: 3}  # a literal, lengths 1 and 4096 (prefixes 0 and 23): two bits each
    _two_length_code(bw, 280, sorted(green), 2)
    for _ in range(3):
        one_symbol(bw)
    near = _prefix(121)  # distance 1
    far_symbol, far_extra, far_bits = _prefix(far + 120)
    _two_length_code(bw, 40, sorted({near[0], far_symbol}), 1)
    distance = {s: i for i, s in enumerate(sorted({near[0], far_symbol}))}
    bw.code(green[0], 2)  # the first value: literal 0
    done = 1
    while done < far:
        run = min(4096, far - done)
        prefix, extra, n = _prefix(run)
        if prefix != 23:  # the last run: literals
            for _ in range(run):
                bw.code(green[0], 2)
        else:
            bw.code(green[279], 2)
            bw.put(extra, n)
            bw.code(distance[near[0]], 1)
            bw.put(near[1], near[2])
        done += run
    for _ in range(copies):
        bw.code(green[256], 2)
        bw.code(distance[far_symbol], 1)
        bw.put(far_extra, far_bits)
    for _ in range(5):  # the one group's codes
        one_symbol(bw)
    return riff([(b"VP8L", bw.bytes())])


def _prefix(value: int) -> tuple[int, int, int]:
    """VP8L's prefix coding of a length or distance code ``value`` (>= 1): symbol, extra bits' value, their count."""
    v = value - 1
    if v < 4:
        return v, 0, 0
    high = v.bit_length() - 1
    second = (v >> (high - 1)) & 1
    extra = high - 1
    return 2 * high + second, v - ((2 + second) << extra), extra


def _two_length_code(bw: BitWriter, alphabet: int, symbols: list[int], length: int) -> None:
    """A normal code giving ``symbols`` (2 ** length of them) ``length`` bits each, the rest none."""
    bw.put(0, 1)
    order = (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8)
    bw.put(len(order) - 4, 4)
    for s in order:  # the code-length code: lengths 0 and ``length``, one bit each
        bw.put(1 if s in (0, length) else 0, 3)
    bw.put(0, 1)
    for symbol in range(alphabet):
        bw.code(1 if symbol in symbols else 0, 1)


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
