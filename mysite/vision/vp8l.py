"""The memory libwebp's prefix-code tables take for a lossless WebP, read from the file before it is decoded.

A lossless picture (VP8L, or a WebP's lossless alpha) may use up to 65,536 groups of five prefix codes,
chosen per tile by an entropy-coded image inside the file, and libwebp builds lookup tables for every group
used, whatever the picture's size: a file of a few hundred kilobytes can ask for gigabytes. The number of
groups is known only by decoding that image and the transforms' images before it, so this decodes them
(each a tile's worth of the picture: 4 to 512 pixels a side), in at most ``MAX_STEPS`` steps. Past them,
or on bytes it cannot follow, it answers the most the picture's size allows, never less than libwebp takes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

# Prefix-code symbols and copied runs decoded, over a whole file: more than libwebp's encoder writes at its
# slowest method for the largest picture a request may be (MYSITE_MAX_PIXELS' default).
MAX_STEPS = 1 << 19
MAX_GROUPS = 1 << 16  # a group's index is 16 bits of the entropy image
# Chunks looked at before the first picture: a real file has a handful (VP8X, ICCP, ANIM, EXIF, XMP, ALPH).
MAX_CHUNKS = 64
# libwebp's worst-case table entries for one group, by colour-cache bits (kTableSize in vp8l_dec.c),
# 4 bytes each; its ``HTreeGroup`` (five pointers, four ints, a 64-entry table of 8 bytes).
_TABLE_ENTRIES = tuple(630 * 3 + 410 + extra for extra in
                       (654, 656, 658, 662, 670, 686, 718, 782, 912, 1168, 1680, 2704))
_GROUP_BYTES = 5 * 8 + 4 * 4 + 64 * 8
# libwebp 1.6 allocates every group's tables at once; later versions, when the largest index passes
# MAX_HUFF_IMAGE_SIZE, that many groups' first, then blocks of as many as they fill: both are counted.
_TABLE_BLOCK = 2600
_ENTRIES_PER_STEP = 32  # a lookup table's entries filled in the time a symbol takes to decode
_MAX_CACHE_BITS = 11
_LITERALS, _LENGTH_CODES, _DISTANCE_CODES = 256, 24, 40
_CODE_LENGTH_ORDER = (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
# The distance codes' (dy, 8 - dx) pairs, dy in the high nibble (kCodeToPlane in vp8l_dec.c, RFC 9649 4.2.2).
_CODE_TO_PLANE = bytes.fromhex(
    "1807171928062729161a262a38053739151b363a252b48044749141c353b464a242c58454b343c03"
    "5759131d565a232d444c555b333d68026769121e666a222e545c434d656b323e78017779535d111f"
    "646c424e767a212f757b313f636d525e00747c414f1020626e30737d515f40727e616f50717f6070"
)


class _Stop(Exception):
    """The walk cannot go on: too many steps, the data ended, or bytes libwebp refuses."""


class _Bits:
    """VP8L's bit reader (least significant bit first), counting the steps and the sub-image pixels held."""

    def __init__(self, data: bytes, steps: int) -> None:
        self.data, self.pos, self.end = data, 0, 8 * len(data)
        self.steps, self.held = steps, 0

    def peek(self, n: int) -> int:
        at = self.pos >> 3
        return (int.from_bytes(self.data[at:at + 4], "little") >> (self.pos & 7)) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        self.pos += n
        if self.pos > self.end:
            raise _Stop("the data ends")

    def read(self, n: int) -> int:
        value = self.peek(n)
        self.skip(n)
        return value

    def check(self) -> None:
        if self.steps < 0:
            raise _Stop("too many steps")
        if self.pos > self.end:
            raise _Stop("the data ends")


class _Code:
    """A canonical prefix code, looked up by its next ``width`` bits as VP8L stores them (first bit lowest)."""

    def __init__(self, lengths: list[int], bits: _Bits) -> None:
        used = sorted((n, s) for s, n in enumerate(lengths) if n)
        if not used:
            raise _Stop("an empty code")
        self.width = used[-1][0] if len(used) > 1 else 0  # one symbol takes no bits
        self.mask = (1 << self.width) - 1
        bits.steps -= len(used) + (1 << self.width) // _ENTRIES_PER_STEP
        bits.check()
        self.table: list[tuple[int, int]] = [(used[0][1], 0)] * (1 << self.width)
        code, previous, filled = 0, 0, 0
        for n, symbol in used if self.width else ():
            code <<= n - previous
            previous = n
            if code >> n:
                raise _Stop("an oversubscribed code")
            reverse = int(f"{code:0{n}b}"[::-1], 2)
            self.table[reverse::1 << n] = [(symbol, n)] * (1 << (self.width - n))
            filled += 1 << (self.width - n)
            code += 1
        if self.width and filled != 1 << self.width:  # libwebp builds only complete codes
            raise _Stop("an incomplete code")

    def read(self, bits: _Bits) -> int:
        """The next symbol; the caller checks the steps and the end (``_Bits.check``)."""
        bits.steps -= 1
        pos = bits.pos
        at = pos >> 3
        symbol, n = self.table[(int.from_bytes(bits.data[at:at + 4], "little") >> (pos & 7)) & self.mask]
        bits.pos = pos + n
        return symbol


def _code_lengths(bits: _Bits, alphabet: int) -> list[int]:
    lengths = [0] * alphabet
    if bits.read(1):  # a simple code: one or two symbols
        count = bits.read(1) + 1
        lengths[bits.read(8 if bits.read(1) else 1)] = 1
        if count == 2:
            lengths[bits.read(8)] = 1
        return lengths
    order = [0] * len(_CODE_LENGTH_ORDER)
    for i in range(bits.read(4) + 4):
        order[_CODE_LENGTH_ORDER[i]] = bits.read(3)
    lengths_code = _Code(order, bits)
    limit = 2 + bits.read(2 + 2 * bits.read(3)) if bits.read(1) else alphabet
    if limit > alphabet:
        raise _Stop("more code lengths than symbols")
    symbol, previous = 0, 8
    while symbol < alphabet and limit > 0:
        limit -= 1
        bits.check()
        n = lengths_code.read(bits)
        if n < 16:
            lengths[symbol] = n
            symbol += 1
            previous = n or previous
            continue
        repeat = bits.read((2, 3, 7)[n - 16]) + (3, 3, 11)[n - 16]
        if symbol + repeat > alphabet:
            raise _Stop("a repeat past the alphabet")
        lengths[symbol:symbol + repeat] = [previous if n == 16 else 0] * repeat
        symbol += repeat
    return lengths


def _group(bits: _Bits, cache_bits: int) -> list[_Code]:
    """One group's five codes: green (with copy lengths and cache indices), red, blue, alpha, distance."""
    green = _LITERALS + _LENGTH_CODES + (1 << cache_bits if cache_bits else 0)
    return [_Code(_code_lengths(bits, size), bits) for size in (green, _LITERALS, _LITERALS, _LITERALS, _DISTANCE_CODES)]


def _cache_bits(bits: _Bits) -> int:
    if not bits.read(1):
        return 0
    n = bits.read(4)
    if not 1 <= n <= _MAX_CACHE_BITS:
        raise _Stop("colour cache bits out of range")
    return n


def _copy_value(bits: _Bits, prefix: int) -> int:
    if prefix < 4:
        return prefix + 1
    extra = (prefix - 2) >> 1
    return ((2 + (prefix & 1)) << extra) + bits.read(extra) + 1


def _sub_image(bits: _Bits, width: int, height: int, keep: bool) -> list[int]:
    """Decode an entropy-coded image of one group: its ARGB values when ``keep``, else only walked past."""
    cache_bits = _cache_bits(bits)
    green, red, blue, alpha, distance = _group(bits, cache_bits)
    total, pos, cached, shift = width * height, 0, 0, 32 - cache_bits
    bits.held += total
    cache = [0] * (1 << cache_bits)
    out: list[int] = []
    while pos < total:
        bits.check()
        symbol = green.read(bits)
        if symbol < _LITERALS:
            r, b = red.read(bits), blue.read(bits)
            argb = (alpha.read(bits) << 24) | (r << 16) | (symbol << 8) | b
            out += [argb] if keep else []
            pos += 1
        elif symbol < _LITERALS + _LENGTH_CODES:
            length = _copy_value(bits, symbol - _LITERALS)
            plane = _copy_value(bits, distance.read(bits))
            back = plane - 120 if plane > 120 else _plane_distance(width, plane)
            if back > pos or pos + length > total:
                raise _Stop("a copy outside the image")
            if keep:  # a copy of what is ``back`` values behind, repeating it when it overlaps its own output
                bits.steps -= length
                start = pos - back
                out += out[start:start + length] if back >= length else (out[start:pos] * (length // back + 1))[:length]
            pos += length
        else:
            if keep:  # the cache holds every value decoded before this one
                for value in out[cached:]:
                    cache[((value * 0x1E35A7BD) & 0xFFFFFFFF) >> shift] = value
                cached = len(out)
                out.append(cache[symbol - _LITERALS - _LENGTH_CODES])
            pos += 1
    bits.check()
    return out


def _plane_distance(width: int, plane: int) -> int:
    code = _CODE_TO_PLANE[plane - 1]
    return max(1, (code >> 4) * width + 8 - (code & 0xF))


def _subsampled(size: int, bits: int) -> int:
    return (size + (1 << bits) - 1) >> bits


def _transforms(bits: _Bits, width: int, height: int) -> int:
    """Walk past the transforms; the width the rest of the stream codes (colour indexing packs pixels)."""
    seen: set[int] = set()
    while bits.read(1):
        kind = bits.read(2)
        if kind in seen:
            raise _Stop("a transform twice")
        seen.add(kind)
        if kind in (0, 1):  # predictor, cross-colour: one tile image
            tile = bits.read(3) + 2
            _sub_image(bits, _subsampled(width, tile), _subsampled(height, tile), keep=False)
        elif kind == 3:  # colour indexing: a palette, then pixels packed 2, 4 or 8 to a byte
            colours = bits.read(8) + 1
            _sub_image(bits, colours, 1, keep=False)
            width = _subsampled(width, 0 if colours > 16 else 1 if colours > 4 else 2 if colours > 2 else 3)
    return width


def _groups(bits: _Bits, width: int, height: int) -> tuple[int, int, int]:
    """The groups libwebp builds, the largest index it sees, and the colour-cache bits."""
    width = _transforms(bits, width, height)
    cache_bits = _cache_bits(bits)
    if not bits.read(1):
        return 1, 1, cache_bits
    tile = bits.read(3) + 2
    image = _sub_image(bits, _subsampled(width, tile), _subsampled(height, tile), keep=True)
    indices = {(value >> 8) & 0xFFFF for value in image}
    largest = max(indices) + 1
    if largest > 1000 or largest > width * height:  # libwebp then builds only the groups used
        return len(indices), largest, cache_bits
    return largest, largest, cache_bits


def table_bytes(groups: int, largest: int, cache_bits: int) -> int:
    """Bytes libwebp allocates for ``groups`` groups of tables at most, the largest index ``largest``."""
    blocks = groups + (_TABLE_BLOCK if largest > _TABLE_BLOCK else 0)
    return groups * _GROUP_BYTES + blocks * _TABLE_ENTRIES[cache_bits] * 4 + 4 * largest


def worst_bytes(width: int, height: int) -> int:
    """The most a lossless picture of this size can make libwebp allocate for its codes and sub-images
    (two transforms' and the entropy image, of a value per 4x4 tile at most, and a palette)."""
    tiles = _subsampled(width, 2) * _subsampled(height, 2)
    return table_bytes(min(MAX_GROUPS, tiles), MAX_GROUPS, _MAX_CACHE_BITS) + 4 * (3 * tiles + 256)


def stream_bytes(data: bytes, width: int, height: int, steps: int = MAX_STEPS) -> tuple[int, int]:
    """Bytes libwebp allocates for the codes and sub-images of the VP8L stream ``data`` (after its
    5-byte header) at most, and the steps left of ``steps``."""
    bits = _Bits(data, steps)
    try:
        found = table_bytes(*_groups(bits, width, height))
    except (_Stop, IndexError, ValueError):
        return worst_bytes(width, height), max(bits.steps, 0)
    return found + 4 * bits.held, bits.steps


Chunk = tuple[bytes, int, int]  # a RIFF chunk: its kind, where its payload starts and ends
_IMAGES = (b"VP8 ", b"VP8L")


def count_chunks(data: bytes, most: int) -> int:
    """The chunks libwebp's demuxer reads in a WebP file (an ANMF's own as chunks of their own): at most
    ``most``, or ``most + 1`` when there are more."""
    return sum(1 for _ in _walk(data, flat=True, most=most))


def _walk(data: bytes, flat: bool, most: int = MAX_CHUNKS) -> Iterator[Chunk]:
    """The file's chunks, at most ``most`` (then an empty kind). ``flat``: an ANMF is its 16-byte
    header, and what follows it is read as chunks of their own, as libwebp's demuxer reads them."""
    start, end = 12, len(data)
    for _ in range(most):
        if start + 8 > end:
            return
        kind, size = data[start:start + 4], struct.unpack_from("<I", data, start + 4)[0]
        yield kind, start + 8, min(start + 8 + size, end)
        start += 8 + (16 if flat and kind == b"ANMF" else size + (size & 1))
    if start + 8 <= end:
        yield b"", 0, 0


def _demuxed(data: bytes, animated: bool) -> tuple[Chunk | None, Chunk | None] | None:
    """The alpha and image chunks of the first frame libwebp's demuxer keeps (Pillow's reader, and OpenCV's
    for an animation): the first ANMF's that holds a picture when ``animated``, else the first at the top
    level. None past ``MAX_CHUNKS``."""
    alpha = image = None
    framed = False  # the chunks follow an ANMF's header
    for chunk in _walk(data, flat=True):
        kind = chunk[0]
        if not kind:
            return None
        ours = framed == animated
        if ours and kind == b"ALPH" and alpha is None:
            alpha = chunk
        elif ours and kind in _IMAGES and image is None:
            image = chunk
        elif alpha or image:  # a second alpha or image, or any other chunk, ends the frame
            return alpha, image
        else:
            framed = kind == b"ANMF" or (framed and kind in (b"ALPH", *_IMAGES))
    return alpha, image


def _decoded(data: bytes) -> tuple[Chunk | None, Chunk | None] | None:
    """The alpha and image chunks libwebp's ``WebPDecode`` takes (OpenCV's reader for a still picture): each
    chunk skipped whole up to the first image, the last alpha before it. None past ``MAX_CHUNKS``."""
    alpha = None
    for chunk in _walk(data, flat=False):
        if not chunk[0]:
            return None
        if chunk[0] == b"ALPH":
            alpha = chunk
        elif chunk[0] in _IMAGES:
            return alpha, chunk
    return alpha, None


def webp_tables(data: bytes) -> int:
    """Bytes libwebp allocates for the codes of the lossless picture or alpha it decodes in a WebP at most:
    the first frame's, as either reader finds it. 0 for a file with none."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return 0
    canvas, animated = (1 << 14, 1 << 14), False
    if data[12:16] == b"VP8X" and len(data) >= 30:
        canvas, animated = _size24(data, 24), bool(data[20] & 0x02)
    frames = [_demuxed(data, animated)] + ([] if animated else [_decoded(data)])
    counted: dict[int, int] = {}
    steps = MAX_STEPS
    for frame in frames:
        if frame is None:
            return worst_bytes(*canvas)
        alpha, image = frame
        size = _image_size(data, image) or canvas  # libwebp decodes the alpha at the image's size
        for chunk in (alpha, image):
            if chunk is not None and chunk[1] not in counted:
                counted[chunk[1]], steps = _picture(data, chunk, size, steps)
    return max(counted.values(), default=0)


def canvas(data: bytes) -> tuple[int, int] | None:
    """The canvas a WebP file declares in its first chunk (VP8X, lossless VP8L or lossy VP8), or None."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    if data[12:16] == b"VP8X":
        return _size24(data, 24)
    return _image_size(data, (data[12:16], 20, len(data)))


def _size24(data: bytes, at: int) -> tuple[int, int]:
    return 1 + int.from_bytes(data[at:at + 3], "little"), 1 + int.from_bytes(data[at + 3:at + 6], "little")


def _image_size(data: bytes, image: Chunk | None) -> tuple[int, int] | None:
    """The size a VP8 or VP8L bitstream gives itself."""
    if image is None:
        return None
    kind, at, end = image
    if kind == b"VP8L" and end - at >= 5 and data[at] == 0x2F:
        header = int.from_bytes(data[at + 1:at + 5], "little")
        return 1 + (header & 0x3FFF), 1 + ((header >> 14) & 0x3FFF)
    if kind == b"VP8 " and end - at >= 10 and data[at + 3:at + 6] == b"\x9d\x01\x2a":
        return int.from_bytes(data[at + 6:at + 8], "little") & 0x3FFF, int.from_bytes(data[at + 8:at + 10], "little") & 0x3FFF
    return None


def _picture(data: bytes, chunk: Chunk, size: tuple[int, int], steps: int) -> tuple[int, int]:
    kind, at, end = chunk
    if kind == b"VP8L" and end - at >= 5 and data[at] == 0x2F:
        return stream_bytes(data[at + 5:end], *size, steps)
    if kind == b"ALPH" and end - at >= 1 and data[at] & 0x03 == 1:  # alpha coded as a lossless green channel
        return stream_bytes(data[at + 1:end], *size, steps)
    return 0, steps
