"""The most pixels a HEIC or AVIF may decode to, read from its AV1 sequence headers and its canvases.

Pillow (libheif, libavif) gives the size of the primary image's ``ispe`` property, but nothing
holds what is decoded to it before it is allocated: the AV1 decoder allocates the picture the
coded data declares, and a derived image (a ``grid`` of tiles, an ``iovl`` overlay) is drawn on
the canvas it declares itself; libheif compares that with ``ispe`` only once it is drawn. A file
of a few KB that says 64x64 can make either allocate a 16384x16384 picture. This walk finds the
AV1 data libavif may decode (every ``av01`` image item, the first sample of every ``av01``
track, and the ``av1C`` configurations) and reads each sequence header in it: a frame is at most
``max_frame_width`` by ``max_frame_height`` under a reduced still-picture header; under a full
header a frame may give its own size, so its bound is what the size fields can count. It reads
the output size of every ``grid`` and ``iovl`` item, and every ``ispe``: a picture's whole size,
from which a clean aperture (``clap``) may crop the smaller size Pillow gives. libheif refuses an
HEVC picture larger than its ``ispe`` before decoding it, so HEVC data is not read.

The walk takes one step per box, item, extent and OBU, each number bounded; a file it cannot
follow is a 422, as libavif or libheif would refuse it too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from mysite.errors import Reason, Unprocessable

# Boxes, items and extents, and OBUs walked in one file: real files have tens of each (a grid of
# tiles, a few hundred).
MAX_BOXES = 4096
MAX_ITEMS = 4096
MAX_OBUS = 16384
_SEQUENCE_HEADER = 1
_CANVASES = (b"grid", b"iovl")  # derived images drawn on a canvas of their own size


def _refuse(message: str) -> Unprocessable:
    return Unprocessable(f"the HEIC or AVIF file's structure cannot be followed: {message}", reason=Reason.BAD_IMAGE)


def coded_pixels(data: bytes) -> int:
    """The most pixels one AV1 picture or canvas in this ISO BMFF file may hold; 0 when it holds neither."""
    walk = _Walk(data)
    try:
        return max(max((_largest(walk, picture) for picture in walk.pictures()), default=0), walk.canvas)
    except (struct.error, IndexError):
        raise _refuse("it ends inside a box") from None


class _Walk:
    """The file's boxes, counted against ``MAX_BOXES``, and the AV1 data they point to."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)  # slices are views: many tracks may point at the same megabytes
        self.boxes_seen = 0
        self.items_seen = 0
        self.obus_seen = 0
        self.item_bytes = 0  # bytes of item data taken: more than the file holds means overlapping extents
        self.read_main = False  # a top-level 'meta' or 'moov' was read: libavif ignores what follows
        self.canvas = 0  # pixels of the largest canvas (grid, overlay) or whole picture ('ispe') declared

    def boxes(self, start: int, end: int, top: bool = False) -> Iterator[tuple[bytes, int, int]]:
        """(type, payload start, end) of the boxes between ``start`` and ``end``."""
        pos = start
        while pos + 8 <= end:
            self.boxes_seen += 1
            if self.boxes_seen > MAX_BOXES:
                raise _refuse(f"more than {MAX_BOXES} boxes")
            size, kind = struct.unpack_from(">I4s", self.data, pos)
            head = 8
            if size == 1:
                (size,) = struct.unpack_from(">Q", self.data, pos + 8)
                head = 16
            elif size == 0:
                size = end - pos
            if size < head or pos + size > end:
                if top and self.read_main:
                    return
                raise _refuse(f"a '{kind.decode('latin-1')}' box overruns its container")
            yield kind, pos + head, pos + size
            pos += size

    def children(self, start: int, end: int) -> dict[bytes, tuple[int, int]]:
        """The first box of each type between ``start`` and ``end``."""
        found: dict[bytes, tuple[int, int]] = {}
        for kind, s, e in self.boxes(start, end):
            found.setdefault(kind, (s, e))
        return found

    def count(self, n: int) -> None:
        self.items_seen += n
        if self.items_seen > MAX_ITEMS:
            raise _refuse(f"more than {MAX_ITEMS} items or extents")

    def pictures(self) -> Iterator[memoryview | bytes]:
        """Every piece of AV1 data libavif may hand its decoder."""
        for kind, s, e in self.boxes(0, len(self.data), top=True):
            if kind == b"meta":
                yield from self._items(s + 4, e)
            elif kind == b"moov":
                yield from self._tracks(s, e)
            self.read_main = self.read_main or kind in (b"meta", b"moov")

    def _items(self, start: int, end: int) -> Iterator[memoryview | bytes]:
        d = self.data
        meta: dict[bytes, tuple[int, int]] = {}
        for kind, s, e in self.boxes(start, end):
            if kind in meta and kind in (b"iinf", b"iloc", b"idat", b"iprp"):
                raise _refuse(f"two '{kind.decode()}' boxes")  # libavif refuses this too
            meta[kind] = (s, e)
        if b"iprp" in meta:
            ipco = self.children(*meta[b"iprp"]).get(b"ipco")
            for kind, s, e in self.boxes(*ipco) if ipco else ():
                if kind == b"av1C":
                    yield d[s + 4: e]
                elif kind == b"ispe":  # a picture's whole size: what is shown may be cropped from it ('clap')
                    if e - s < 12:
                        raise _refuse("an 'ispe' property too short for a size")
                    width, height = struct.unpack_from(">II", d, s + 4)
                    self.canvas = max(self.canvas, width * height)
        types = self._item_types(*meta[b"iinf"]) if b"iinf" in meta else {}
        if not types:
            return
        if b"iloc" not in meta:
            raise _refuse("items without locations")
        for item, method, base, extents in self._locations(*meta[b"iloc"]):
            item_type = types.get(item)
            if item_type is None:
                continue
            if method == 0:  # in the file
                origin, limit = 0, len(d)
            elif method == 1 and b"idat" in meta:  # in the idat box
                origin, limit = meta[b"idat"]
            else:
                raise _refuse(f"item {item} is stored in a way libavif does not read")
            pieces = []
            for offset, length in extents:
                at = origin + base + offset
                stop = limit if length == 0 else at + length
                if at > limit or stop > limit:
                    raise _refuse(f"item {item} lies past the end of the file")
                pieces.append(d[at:stop])
                self.item_bytes += stop - at
            if self.item_bytes > len(d):
                raise _refuse("items overlap")
            if item_type in _CANVASES:
                self.canvas = max(self.canvas, _canvas(item_type, b"".join(pieces)))
            else:
                yield b"".join(pieces)

    def _item_types(self, start: int, end: int) -> dict[int, bytes]:
        """The ``av01`` items and the canvases (``grid``, ``iovl``) of an ``iinf`` box, by item number."""
        d = self.data
        first = start + (6 if d[start] == 0 else 8)  # version, flags, entry count
        found = {}
        for kind, s, _end in self.boxes(first, end):
            if kind != b"infe" or d[s] < 2:
                continue
            item, at = (struct.unpack_from(">H", d, s + 4)[0], s + 8) if d[s] == 2 else \
                (struct.unpack_from(">I", d, s + 4)[0], s + 10)
            if (item_type := d[at: at + 4].tobytes()) == b"av01" or item_type in _CANVASES:
                found[item] = item_type
        return found

    def _locations(self, start: int, end: int) -> Iterator[tuple[int, int, int, list[tuple[int, int]]]]:
        """(item, construction method, base offset, [(offset, length)]) from an ``iloc`` box."""
        d = self.data
        version = d[start]
        offset_size, length_size = d[start + 4] >> 4, d[start + 4] & 15
        base_size, index_size = d[start + 5] >> 4, (d[start + 5] & 15) if version in (1, 2) else 0
        wide = version == 2
        pos = start + 6
        count, pos = _number(d, pos, 4 if wide else 2)
        self.count(count)
        for _ in range(count):
            item, pos = _number(d, pos, 4 if wide else 2)
            method = 0
            if version in (1, 2):
                flags, pos = _number(d, pos, 2)
                method = flags & 15
            pos += 2  # data reference index
            base, pos = _number(d, pos, base_size)
            n, pos = _number(d, pos, 2)
            self.count(n)
            extents = []
            for _ in range(n):
                pos += index_size
                offset, pos = _number(d, pos, offset_size)
                length, pos = _number(d, pos, length_size)
                extents.append((offset, length))
            if pos > end:
                raise _refuse("the item locations overrun their box")
            yield item, method, base, extents

    def _tracks(self, start: int, end: int) -> Iterator[memoryview]:
        d = self.data
        for kind, s, e in self.boxes(start, end):
            if kind != b"trak":
                continue
            stbl = self._path(s, e, (b"mdia", b"minf", b"stbl"))
            if stbl is None:
                continue
            table = self.children(*stbl)
            if b"stsd" not in table:
                continue
            sd_start, sd_end = table[b"stsd"]
            av1 = [(es, ee) for k, es, ee in self.boxes(sd_start + 8, sd_end) if k == b"av01"]
            if not av1:
                continue
            for es, ee in av1:  # a visual sample entry's 78 bytes, then its boxes (av1C among them)
                yield from (d[cs + 4: ce] for k, cs, ce in self.boxes(es + 78, ee) if k == b"av1C")
            wide = b"stco" not in table
            chunks = table.get(b"co64") if wide else table[b"stco"]
            if b"stsz" not in table or chunks is None:
                raise _refuse("an AV1 track without sample sizes or chunk offsets")
            size, count = struct.unpack_from(">II", d, table[b"stsz"][0] + 4)
            if count == 0 or struct.unpack_from(">I", d, chunks[0] + 4)[0] == 0:
                continue
            if size == 0:
                (size,) = struct.unpack_from(">I", d, table[b"stsz"][0] + 12)
            (offset,) = struct.unpack_from(">Q" if wide else ">I", d, chunks[0] + 8)
            if offset + size > len(d):
                raise _refuse("a track's first sample lies past the end of the file")
            yield d[offset: offset + size]

    def _path(self, start: int, end: int, names: tuple[bytes, ...]) -> tuple[int, int] | None:
        for name in names:
            found = self.children(start, end).get(name)
            if found is None:
                return None
            start, end = found
        return start, end


def _number(d: memoryview, pos: int, size: int) -> tuple[int, int]:
    """A big-endian number of ``size`` bytes (0, 2, 4 or 8) at ``pos``, and the position after it."""
    if size == 0:
        return 0, pos
    if size not in (2, 4, 8):
        raise _refuse(f"a {size}-byte field")
    if pos + size > len(d):
        raise IndexError(pos)
    return int.from_bytes(d[pos: pos + size], "big"), pos + size


def _largest(walk: _Walk, picture: memoryview | bytes) -> int:
    """The most pixels a frame of ``picture`` (a run of OBUs) may have, over its sequence headers."""
    pos, n, most = 0, len(picture), 0
    while pos < n:
        walk.obus_seen += 1
        if walk.obus_seen > MAX_OBUS:
            raise _refuse(f"more than {MAX_OBUS} OBUs")
        header = picture[pos]
        pos += 2 if header & 4 else 1  # the extension byte
        size = n - pos
        if header & 2:
            size, pos = _leb128(picture, pos)
        if pos + size > n:
            raise _refuse("an OBU overruns its data")
        if (header >> 3) & 15 == _SEQUENCE_HEADER:
            most = max(most, _frame_bound(picture[pos: pos + size]))
        pos += size
    return most


def _canvas(item_type: bytes, descriptor: bytes) -> int:
    """Pixels of the canvas a ``grid`` (ImageGrid) or ``iovl`` (ImageOverlay) item's data declares.

    A grid's data is exactly its fields (libavif refuses more); an overlay's go on with each input's offset.
    """
    wide = len(descriptor) > 1 and descriptor[1] & 1
    at = 4 if item_type == b"grid" else 10  # past version, flags, and rows and columns or four fill values
    fields = at + (8 if wide else 4)
    if descriptor[:1] != b"\0" or len(descriptor) < fields or (item_type == b"grid" and len(descriptor) != fields):
        raise _refuse(f"a '{item_type.decode()}' item whose data cannot be read")
    width, height = struct.unpack_from(">II" if wide else ">HH", descriptor, at)
    return int(width) * int(height)


def _leb128(d: memoryview | bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = d[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise _refuse("an OBU size of more than 8 bytes")


class _Bits:
    def __init__(self, data: memoryview | bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = 8 * len(data)

    def read(self, n: int) -> int:
        if n > self.left:
            raise _refuse("a sequence header ends early")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def uvlc(self) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros >= 32:
                return (1 << 32) - 1
        return self.read(zeros) + (1 << zeros) - 1


def _frame_bound(header: memoryview | bytes) -> int:
    """Pixels of the largest frame a sequence header allows (AV1 5.5.1)."""
    bits = _Bits(header[:512])  # the fields up to the frame size: at most about 400 bytes
    bits.read(4)  # seq_profile, still_picture
    reduced = bits.read(1)
    if reduced:
        bits.read(5)
    else:
        model = delay_length = 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(64)
            if bits.read(1):
                bits.uvlc()
            model = bits.read(1)
            if model:
                delay_length = bits.read(5) + 1
                bits.read(42)
        display = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)
            if bits.read(5) > 7:
                bits.read(1)
            if model and bits.read(1):
                bits.read(2 * delay_length + 1)
            if display and bits.read(1):
                bits.read(4)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    width, height = bits.read(width_bits) + 1, bits.read(height_bits) + 1
    if not reduced:  # a frame header may override the size with up to this many bits
        width, height = 1 << width_bits, 1 << height_bits
    return width * height
