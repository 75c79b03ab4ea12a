"""A bounded first look at an image's structure, before Pillow reads its header.

Pillow reads headers in Python, one step per JPEG marker (and per byte between markers) and per
Photoshop resource, per PNG chunk, per GIF block before the first frame, per TIFF tag and per
number a TIFF tag holds (an EXIF block is a TIFF directory too: ``exif``); libpng writes a line
to stderr for most PNG chunks it finds damaged or out of place. So a file made of a million
empty markers, chunks or numbers costs seconds, or megabytes of log, before any pixel. This
walk takes one step per structure too, but stops (422) past a number no real file comes near,
so what Pillow and libpng are then given is bounded. It also counts a progressive JPEG's scans:
libjpeg passes over every coefficient of the image once per scan, so one scan repeated until
the file is a megabyte costs minutes; past ``MAX_SCANS`` the file is refused, and so it is when
its scans together pass over the image's coefficients more than ``MAX_SCANS / SCANS_PER_PASS``
times (a refinement scan visits its whole band in every block). And it says whether
libjpeg buffers every coefficient of the image (``buffered``), which costs memory whatever the
reduction; a lossless JPEG, which libjpeg decodes only at full size, is refused (415), and so is
an arithmetic-coded one, whose every coefficient costs libjpeg an adaptive decision where a
Huffman-coded one costs a table lookup: many times the time per pass, in a file a fraction of the size.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from mysite.errors import Reason, Unprocessable, UnsupportedMedia
from mysite.vision import heif_size, vp8l

# Segments before a JPEG's first scan: EXIF, XMP (extended XMP spans dozens), ICC (at most 255
# pieces), MPF, tables, comments. Real files have tens.
MAX_JPEG_SEGMENTS = 512
# Bytes that are no marker (padding 0xff bytes, garbage between segments): libjpeg warns and
# skips them; Pillow reads them one at a time.
MAX_JPEG_STRAY_BYTES = 4096
# Bytes of a JPEG's Photoshop segments (APP13): Pillow reads their resources one at a time in Python.
# Real files: tens to hundreds of kilobytes (IPTC, a thumbnail, paths).
MAX_JPEG_PHOTOSHOP_BYTES = 1 << 20
# Scans of a progressive JPEG: encoders write 6-20; nvImageCodec's default limit is 256 too.
# MYSITE_MAX_SCANS sets it (create_app, before the CV processes are forked).
MAX_SCANS = 256
# The scans together may visit each coefficient at most MAX_SCANS / SCANS_PER_PASS times: a refinement
# scan costs libjpeg its whole band in every block, however little data it holds.
SCANS_PER_PASS = 8
# PNG chunks before the first IDAT, and after it (an animated PNG's frames aside: libpng skips
# them), GIF blocks and sub-blocks before the first frame, tags of a TIFF's first directory: real
# files have tens. A damaged PNG chunk is refused, as Pillow refuses one before the image data.
MAX_PNG_CHUNKS = 512
MAX_GIF_BLOCKS = 4096
MAX_TIFF_TAGS = 1024
# PNG chunks in all, IDAT and frames too. Real files: an IDAT each 8 KB or more.
MAX_PNG_ALL_CHUNKS = 16_384
# A WebP's chunks, an animation's frames' too: libwebp's demuxer keeps a record of each. Real files: a
# handful, and two or three a frame.
MAX_WEBP_CHUNKS = 16_384
_PNG_FRAMES = {b"fcTL", b"fdAT"}
# Numbers in the values of a TIFF's first directory: Pillow makes a Python object of each (and a
# tile of each strip), a fraction a costlier one. Real files: a few per tag, and two per strip or
# tile (tens to thousands of strips).
MAX_TIFF_NUMBERS = 1 << 17
TIFF_FRACTION_WEIGHT = 32
# Tags of an EXIF block's first directory: as many as a JPEG's EXIF segment can hold (64 KB less 18
# bytes: its length, Exif\0\0, the TIFF header, the count). Pillow reads each in Python, and a WebP,
# HEIC, AVIF or PNG may carry megabytes of them. Counted as far as the block goes, as Pillow reads
# them, so a real photo's damaged count is not refused.
MAX_EXIF_TAGS = (0xFFFF - 18) // 12
# Values of the EXIF orientation, which holds one: Pillow makes an object of each when it reads it.
MAX_ORIENTATION_VALUES = 16
_EXIF_ORIENTATION = 0x0112
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # little- and big-endian, TIFF and BigTIFF
_TIFF_BYTES = {1, 2, 7}  # BYTE, ASCII, UNDEFINED: Pillow keeps these as one bytes or str
_TIFF_FRACTIONS = {5, 10}  # RATIONAL, SRATIONAL
# BYTE, SBYTE, SHORT, SSHORT, LONG, SLONG, LONG8, SLONG8, IFD, IFD8: an integer tag may be any of them
# to libtiff (OpenCV's or Pillow's).
_TIFF_INTEGERS = {1: "B", 6: "b", 3: "H", 8: "h", 4: "I", 9: "i", 16: "Q", 17: "q", 13: "I", 18: "Q"}
# Bytes a value of each type takes (the fractions and floats too); ASCII and UNDEFINED, one.
_TIFF_SIZES = {kind: struct.calcsize(code) for kind, code in
               {**_TIFF_INTEGERS, 5: "II", 10: "ii", 11: "f", 12: "d"}.items()}
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 322, 323
_TIFF_COMPRESSION, _TIFF_OLD_JPEG = 259, 6
_TIFF_JPEGS = {7, 34892}  # JPEG, and DNG's lossy JPEG
_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS = 273, 324
_TIFF_OFFSETS = {_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS}
_TIFF_READ = {_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH, _TIFF_COMPRESSION, *_TIFF_OFFSETS}
# A JPEG-compressed TIFF's strips or tiles, each a JPEG stream checked as a JPEG file is: strips are a
# multiple of 8 rows, tiles of 16 pixels a side, so real files have hundreds. Segments before each
# stream's scan: libtiff writes its tables once, apart (JPEGTables), and each stream a handful.
MAX_TIFF_JPEG_STREAMS = 8192
MAX_TIFF_JPEG_SEGMENTS = 32

_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn: no length follows
_JPEG_SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}
_JPEG_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_JPEG_ARITHMETIC = {0xC9, 0xCA, 0xCD, 0xCE}  # the lossless one (0xCB, 0xCF) is refused as lossless
_JPEG_LOSSLESS = {0xC3, 0xC7, 0xCB, 0xCF}
_JPEG_TABLES = {0xC4, 0xCC, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)}  # DHT, DAC, DQT, DRI, COM, APPn
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


@dataclass(frozen=True)
class Structure:
    """What the walk found: the scans of a JPEG (1 for any other format) and whether libjpeg buffers them."""

    scans: int = 1
    # libjpeg keeps every coefficient of the image at once when its scans are not whole pictures in turn:
    # progressive, or a first scan without every component (libjpeg's ``has_multiple_scans``).
    buffered: bool = False
    samples: float = 3.0  # a JPEG's samples per pixel over its components (1.5 for 4:2:0 colour, 1 for gray)
    # The most pixels decoding may hold at once when more than the stated size: a HEIC's or AVIF's coded data
    # or canvas (``heif_size``), a TIFF's tile.
    coded: int = 0
    tables: int = 0  # bytes of a lossless WebP's prefix-code tables (``vp8l``)


def scan(data: bytes) -> Structure:
    """Walk the file's structure up to its pixel data; 422 when it is absurd (see the limits above).

    Bytes of no format handled here, and files that end early, are left to Pillow to judge.
    """
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        _png(data)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        _gif(data)
    elif data.startswith(_TIFF_MAGIC):
        return _tiff(data)
    elif data[4:8] == b"ftyp":  # HEIC and AVIF: ISO base media files
        return Structure(coded=heif_size.coded_pixels(data))
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        if vp8l.count_chunks(data, MAX_WEBP_CHUNKS) > MAX_WEBP_CHUNKS:
            raise _refuse(f"this WebP has more than {MAX_WEBP_CHUNKS} chunks; real files have a few per frame")
        return Structure(tables=vp8l.webp_tables(data))
    return Structure()


def _refuse(message: str) -> Unprocessable:
    return Unprocessable(message, reason=Reason.BAD_IMAGE)


def _jpeg(data: bytes) -> Structure:
    pos, n, segments, stray, progressive, samples, photoshop = 2, len(data), 0, 0, False, 3.0, 0
    components: list[tuple[int, int]] = []
    while pos + 1 < n:
        if data[pos] != 0xFF or data[pos + 1] in (0x00, 0xFF):  # no marker here: on to the next 0xff
            found = data.find(b"\xff", pos + 1)
            if found < 0:
                break
            stray += found - pos
            if stray > MAX_JPEG_STRAY_BYTES:
                raise _refuse(f"the JPEG has more than {MAX_JPEG_STRAY_BYTES} bytes between its segments that "
                              "belong to none; it is not read")
            pos = found
            continue
        marker = data[pos + 1]
        pos += 2
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _refuse(f"the JPEG has more than {MAX_JPEG_SEGMENTS} segments before its image data; "
                          "no camera or editor writes that many: it is not read")
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9 or pos + 2 > n:  # EOI before any scan, or cut short: Pillow says what is wrong
            break
        if marker == 0xED:
            photoshop += struct.unpack_from(">H", data, pos)[0]
            if photoshop > MAX_JPEG_PHOTOSHOP_BYTES:
                raise _refuse(f"the JPEG's Photoshop segments (APP13) hold more than {MAX_JPEG_PHOTOSHOP_BYTES} "
                              "bytes; it is not read")
        if marker in _JPEG_LOSSLESS:
            raise UnsupportedMedia("this is a lossless JPEG, which is decoded only at full size whatever is asked; "
                                   "send it as PNG, or as an ordinary JPEG")
        if marker in _JPEG_ARITHMETIC:
            raise UnsupportedMedia("this JPEG is arithmetic-coded, which browsers do not show and which costs the "
                                   "decoder many times an ordinary JPEG; send it as PNG, or as an ordinary JPEG")
        if marker in _JPEG_SOF:
            progressive = marker in _JPEG_PROGRESSIVE
            components = _frame_components(data, pos)
            samples = _samples_per_pixel(components)
        if marker == 0xDA:  # the first scan: its image data can hold 0xffda only as another scan's marker
            scans = 1 + data.count(b"\xff\xda", pos)
            if scans > MAX_SCANS:
                raise _refuse(f"the JPEG has {scans} scans; the limit is {MAX_SCANS} (encoders write 6 to 20, "
                              "and each one means another pass over the whole image)")
            passes = _passes(data, pos - 2, _block_shares(components), progressive)
            if passes > MAX_SCANS / SCANS_PER_PASS:
                raise _refuse(f"the JPEG's {scans} scans pass over its coefficients {passes:.0f} times; the limit is "
                              f"{MAX_SCANS / SCANS_PER_PASS:g} (encoders write 2 to 4)")
            in_scan = data[pos + 2] if pos + 3 <= n else 0
            return Structure(scans, progressive or in_scan < len(components), samples)
        pos += struct.unpack_from(">H", data, pos)[0]
    return Structure(1, progressive, samples)


def _frame_components(data: bytes, pos: int) -> list[tuple[int, int]]:
    """From a frame header at ``pos`` (after its marker): each component's id and sampling factors (H << 4 | V)."""
    count = data[pos + 7] if pos + 8 <= len(data) else 0
    return [(data[pos + 8 + 3 * i], data[pos + 9 + 3 * i]) for i in range(count) if pos + 10 + 3 * i <= len(data)]


def _block_shares(components: list[tuple[int, int]]) -> dict[int, float]:
    """Each component id's share of the image's blocks: the largest share of the components with that id,
    as libjpeg may match a scan's selector to any of them."""
    total = sum((f >> 4) * (f & 15) for _, f in components)
    shares: dict[int, float] = {}
    for c, f in components:
        shares[c] = max(shares.get(c, 0.0), (f >> 4) * (f & 15) / total)
    return shares if total else {}


def _passes(data: bytes, at: int, blocks: dict[int, float], progressive: bool) -> float:
    """How many times the scans from ``at`` (a 0xffda) on visit every coefficient of the image: each scan,
    its components' share of the blocks times its share of a block's 64 coefficients. libjpeg visits
    the whole band of every block in a refinement scan, whatever its data says, and in a sequential
    scan all 64 coefficients, whatever band its header names."""
    passes = 0.0
    for _ in range(MAX_SCANS):  # the scans were counted: the loop ends at the last
        if at < 0 or at + 5 > len(data):
            break
        count = data[at + 4]
        band = at + 5 + 2 * count
        if band + 2 > len(data):
            break
        share = sum(blocks.get(data[at + 5 + 2 * i], 0.0) for i in range(count))
        passes += share * (max(0, data[band + 1] - data[band] + 1) / 64 if progressive else 1)
        # The next 0xffda, however far this header claims to run: one in a comment reads as a scan
        # (counted, never skipped over), and a real scan is never passed by.
        at = data.find(b"\xff\xda", at + 2)
    return passes


def _samples_per_pixel(components: list[tuple[int, int]]) -> float:
    """Samples per pixel summed over the frame's components."""
    factors = [f for _, f in components]
    if not factors:
        return 3.0
    h_max = max(f >> 4 for f in factors) or 1
    v_max = max(f & 15 for f in factors) or 1
    return sum((f >> 4) * (f & 15) for f in factors) / (h_max * v_max)


def png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, position, length) of a PNG's chunks up to ``IEND`` or the end of the data; a 422 past
    ``MAX_PNG_ALL_CHUNKS``."""
    pos, n = 8, len(data)
    for _ in range(MAX_PNG_ALL_CHUNKS):
        if pos + 8 > n:
            return
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IEND":
            return
        yield kind, pos, length
        pos += 12 + length
    raise _refuse(f"the PNG has more than {MAX_PNG_ALL_CHUNKS} chunks; it is not read")


def _png(data: bytes) -> None:
    n, outside, profiles, after = len(data), 0, 0, False
    for kind, pos, length in png_chunks(data):
        if kind == b"IDAT":
            if not after:
                outside, after = 0, True
        else:
            if kind not in _PNG_FRAMES or not after:
                outside += 1
            if outside > MAX_PNG_CHUNKS:
                where = "after" if after else "before"
                raise _refuse(f"the PNG has more than {MAX_PNG_CHUNKS} chunks {where} its image data; it is not read")
            end = pos + 8 + length
            if end + 4 <= n and zlib.crc32(memoryview(data)[pos + 4:end]) != struct.unpack_from(">I", data, end)[0]:
                raise _refuse(f"the PNG's {kind!r} chunk at byte {pos} is damaged (its checksum does not match)")
        if kind == b"iCCP":  # Pillow decompresses each, up to 1 MB; the PNG standard allows one
            profiles += 1
            if profiles > 1:
                raise _refuse("the PNG has more than one colour profile (iCCP chunk); it is not read")


def _gif(data: bytes) -> None:
    n = len(data)
    if n < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while pos < n and data[pos] not in (0x2C, 0x3B):  # up to the first frame (",") or the end (";")
        if data[pos] != 0x21:  # a stray byte: Pillow skips it, one step each, and reads on
            blocks += 1
            pos += 1
        else:  # an extension: "!", its label, then sub-blocks up to an empty one
            pos += 2
            while pos < n:
                blocks += 1
                if blocks > MAX_GIF_BLOCKS:
                    break
                size = data[pos]
                pos += 1 + size
                if not size:
                    break
        if blocks > MAX_GIF_BLOCKS:
            raise _refuse(f"the GIF has more than {MAX_GIF_BLOCKS} blocks or stray bytes before its first frame; "
                          "it is not read")


def exif(raw: bytes | None) -> None:
    """Refuse an EXIF block (a TIFF, perhaps after ``Exif\\0\\0``) whose first directory holds over ``MAX_EXIF_TAGS``
    tags, or whose orientation holds more than a few values: Pillow makes an object of each value of the
    one tag it is asked for, the orientation (a fraction, a costly one)."""
    tiff = (raw[6:] if raw.startswith(b"Exif\x00\x00") else raw) if raw else b""
    directory = _first_directory(tiff) if tiff.startswith(_TIFF_MAGIC) else None
    if directory is not None:
        order, declared, first, entry, value = directory
        tags = min(declared, (len(tiff) - first) // entry)
        if tags > MAX_EXIF_TAGS:
            raise _refuse(f"the image's EXIF block has {tags} tags in its first directory; the limit is {MAX_EXIF_TAGS}")
        for tag, kind, n, _ in _entries(tiff, order, tags, first, entry, value):
            if tag == _EXIF_ORIENTATION and min(n, len(tiff) // _TIFF_SIZES.get(kind, 1)) > MAX_ORIENTATION_VALUES:
                raise _refuse(f"the image's EXIF orientation holds {n} values; it holds one")


def _entries(data: bytes, order: str, tags: int, first: int, entry: int, value: str) -> list[tuple[int, int, int, int]]:
    """A directory's entries as far as the data goes: tag, type, count, and where its value or offset is."""
    kinds = struct.Struct(order + "HH" + value)
    return [(*kinds.unpack_from(data, at), at + kinds.size)
            for at in range(first, min(first + tags * entry, len(data) - kinds.size + 1), entry)]


def _check_numbers(entries: list[tuple[int, int, int, int]], size: int, what: str) -> None:
    """422 when the entries' values hold more than ``MAX_TIFF_NUMBERS`` numbers, a fraction counting more; a
    count past what the ``size`` bytes of data can hold is counted as far as they go, as Pillow reads it."""
    numbers = sum(min(n, size // _TIFF_SIZES.get(kind, 1)) * (TIFF_FRACTION_WEIGHT if kind in _TIFF_FRACTIONS else 1)
                  for _, kind, n, _ in entries if kind not in _TIFF_BYTES)
    if numbers > MAX_TIFF_NUMBERS:
        raise _refuse(f"{what} holds {numbers} numbers (a fraction counts {TIFF_FRACTION_WEIGHT}); the limit is "
                      f"{MAX_TIFF_NUMBERS}; it is not read")


def _first_directory(data: bytes) -> tuple[str, int, int, int, str] | None:
    """A TIFF's byte order, its first directory's tag count, where its entries start, an entry's size and
    an offset's format; None when the file ends before them."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte counts and offsets
    offset_at, count, entry, value = (8, "Q", 20, "Q") if big else (4, "H", 12, "I")
    if len(data) < offset_at + 8:
        return None
    offset = struct.unpack_from(order + value, data, offset_at)[0]
    if offset + 8 > len(data):
        return None
    return order, struct.unpack_from(order + count, data, offset)[0], offset + struct.calcsize(count), entry, value


def _tiff(data: bytes) -> Structure:
    directory = _first_directory(data)
    if directory is None:
        return Structure()
    order, tags, first, entry, value = directory
    if tags > MAX_TIFF_TAGS:
        raise _refuse(f"the TIFF's first directory has {tags} tags; the limit is {MAX_TIFF_TAGS}; it is not read")
    entries = _entries(data, order, tags, first, entry, value)
    _check_numbers(entries, len(data), "the TIFF's first directory")
    found = [e for e in entries if e[0] in _TIFF_READ]
    inline = struct.calcsize(value)
    # Every copy of a tag, of any integer type, its first values: libtiff's reading of a directory is lenient.
    values: dict[int, list[int]] = {tag: [] for tag in _TIFF_READ}
    for tag, kind, n, at in found:
        if tag not in _TIFF_OFFSETS:
            values[tag] += _tiff_integers(data, order, kind, n, at, inline, take=min(n, 16))
    compression = set(values[_TIFF_COMPRESSION])
    if _TIFF_OLD_JPEG in compression:
        raise UnsupportedMedia("this TIFF holds JPEG data as TIFF 6.0 first put it, a form abandoned since; "
                               "send it as PNG, or as a JPEG")
    if compression & _TIFF_JPEGS:  # every strip or tile any copy of either tag points at
        offsets = [(kind, n, at) for tag, kind, n, at in found if tag in _TIFF_OFFSETS]
        streams = sum(n for _, n, _ in offsets)
        if streams > MAX_TIFF_JPEG_STREAMS:
            raise _refuse(f"the TIFF's JPEG data is in {streams} strips or tiles; the limit is {MAX_TIFF_JPEG_STREAMS}")
        starts = {start for kind, n, at in offsets for start in _tiff_integers(data, order, kind, n, at, inline)}
        read = 0
        for start in sorted(starts):
            read += _tiff_jpeg(data, start)
            if read > 2 * len(data):  # streams that overlap: each read to its end would cost the file's length
                raise _refuse("the TIFF's strips or tiles of JPEG data overlap; it is not read")
    # A tile may be far larger than the picture; the decoders allocate and fill it whole.
    return Structure(coded=max(values[_TIFF_TILE_WIDTH], default=0) * max(values[_TIFF_TILE_LENGTH], default=0))


def _tiff_integers(data: bytes, order: str, kind: int, n: int, at: int, inline: int,
                   take: int | None = None) -> tuple[int, ...]:
    """The first ``take`` (all) of a tag's ``n`` integers, from its entry (``at``, ``inline`` bytes) or where the
    entry points; () when they cannot be read."""
    code = _TIFF_INTEGERS.get(kind)
    if code is None:
        return ()
    take = n if take is None else take
    if struct.calcsize(code) * n > inline:
        if at + inline > len(data):
            return ()
        at = struct.unpack_from(order + ("Q" if inline == 8 else "I"), data, at)[0]
    return struct.unpack_from(f"{order}{take}{code}", data, at) if at + struct.calcsize(code) * take <= len(data) else ()


def _tiff_jpeg(data: bytes, start: int) -> int:
    """Refuse a TIFF's strip or tile of JPEG data that is anything but one scan of Huffman-coded sequential
    JPEG, as TIFF writers make them: libjpeg decodes the others at many times the cost, as for a JPEG file.
    The stream is walked to its end (EOI), whatever the byte counts say, and anything in it that is not
    a marker where one belongs is refused: libjpeg skips such bytes, and so reads what they hid. The
    bytes walked."""
    if data[start:start + 2] != b"\xff\xd8":
        return 0  # not JPEG data: libjpeg refuses it
    pos, end, scans, components = start + 2, len(data), 0, 0
    for _ in range(MAX_TIFF_JPEG_SEGMENTS):
        if pos + 2 > end or data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte
            pos += 1
        elif marker in _JPEG_STANDALONE:
            pos += 2
        elif marker == 0xD9:
            if scans:
                return pos + 2 - start
            break
        elif marker in _JPEG_SOF and marker not in (0xC0, 0xC1):
            raise UnsupportedMedia("this TIFF's JPEG data is progressive, lossless or arithmetic-coded, which no "
                                   "TIFF writer makes and which costs the decoder many times more; send it as PNG, "
                                   "or as a JPEG")
        elif marker == 0xDA and scans:
            raise UnsupportedMedia("this TIFF's JPEG data is in several scans, which no TIFF writer makes and which "
                                   "costs the decoder a pass each; send it as PNG, or as a JPEG")
        elif (marker in _JPEG_SOF or marker in _JPEG_TABLES or marker == 0xDA) and pos + 10 <= end:
            if marker in _JPEG_SOF:
                components = data[pos + 9]
            if marker == 0xDA and data[pos + 4] != components:
                raise UnsupportedMedia("this TIFF's JPEG data leaves some of its components out of its scan, which "
                                       "no TIFF writer makes and which makes the decoder hold every coefficient of "
                                       "the frame, whatever the TIFF's size; send it as PNG, or as a JPEG")
            pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
            if marker == 0xDA:  # the scan's data runs to the next marker that is neither a restart nor a stuffed 0xff
                scans = 1
                found = _ENTROPY_END.search(data, pos)
                pos = found.start() if found else end
        else:
            break
    raise _refuse("a JPEG strip or tile of the TIFF is damaged or holds too many segments")
