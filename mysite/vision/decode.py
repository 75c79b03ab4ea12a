"""Bytes to a numpy image, with the size checked before any pixel is allocated."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError

from mysite.errors import Reason, TooLarge, Unprocessable, UnsupportedMedia
from mysite.vision import header_scan, png_data, vp8l

try:  # HEIC, what iPhones upload by default: libheif through pillow-heif (AVIF is Pillow's own)
    import pillow_heif

    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    _HEIF: tuple[str, ...] = ("HEIF",)
except ImportError:  # pragma: no cover - a requirement; without it HEIC is refused as an unknown format
    _HEIF = ()

# Pillow decompresses every zTXt and iTXt chunk of a PNG it opens, by default up to 64 MB in all
# whatever the file's size; the site reads none of that text. Past this, the PNG is a 422.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 1024 * 1024
# Pillow's names of the formats we accept (its JPEG reader also opens the MPO files phones write).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "AVIF", *_HEIF)
# Formats OpenCV does not read: decoded by Pillow (libheif, libavif) at full size, then reduced.
LEAN_PILLOW = frozenset({"HEIF", "AVIF"})
# Peak bytes per pixel of the picture of that path (``_decode_pillow_only``): the decoder's planes and
# its RGB image, Pillow's bytes of it, and the BGR array (libavif's threads hold more planes than
# libheif); less when gray or reduced, as the BGR array is smaller (measured by
# ``python -m bench.decode_memory``).
PILLOW_ONLY_BYTES_PER_PIXEL = {"HEIF": 14, "AVIF": 16}
PILLOW_ONLY_SMALL_BYTES_PER_PIXEL = 10
# ISO base media files (HEIC, AVIF) name their kind by the brand of their ftyp box.
_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC", b"heim": "HEIC",
                b"heis": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
JPEG_MAX_SIDE = 65500  # libjpeg's limit on either side of a picture it writes
# Signatures of the formats we read: bytes that start like one are a broken image (422), not another kind (415).
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)
_FLAGS = {
    (False, 1): cv2.IMREAD_COLOR,
    (False, 2): cv2.IMREAD_REDUCED_COLOR_2,
    (False, 4): cv2.IMREAD_REDUCED_COLOR_4,
    (False, 8): cv2.IMREAD_REDUCED_COLOR_8,
    (True, 1): cv2.IMREAD_GRAYSCALE,
    (True, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (True, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (True, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


@dataclass(frozen=True)
class Header:
    """What the file says about itself, read without decoding pixels."""

    format: str
    width: int  # after EXIF orientation, as the picture is seen
    height: int
    alpha: bool = False  # has transparency: flattened onto white when decoded
    bits: int = 8  # bits per sample: 8, 16 (PNG, TIFF) or 32 (integer and float TIFFs)
    scans: int = 1  # a JPEG's scans (libjpeg passes over the image once per scan)
    buffered: bool = False  # a JPEG whose every coefficient libjpeg holds at once (``header_scan.Structure``)
    samples: float = 3.0  # a JPEG's samples per pixel over its components (4:2:0 colour: 1.5); other formats' bands
    coded: int = 0  # pixels a coded picture, canvas or tile may hold, which nothing holds to width x height
    tables: int = 0  # bytes the decoder allocates whatever the pixels: a lossless WebP's prefix-code tables

    @property
    def pixels(self) -> int:
        """The most pixels decoding may hold at once: width x height, or a larger coded picture, canvas or tile."""
        return max(self.width * self.height, self.coded)


@dataclass(frozen=True)
class Decoded:
    """A decoded image (BGR or gray, uint8) and how it maps to the original."""

    image: np.ndarray
    header: Header
    scale: float  # decoded pixels per original pixel (1.0 unless reduced)


def what_bytes_are(data: bytes, content_type: str | None = None) -> str:
    """Say in words what some bytes that are not an image seem to be."""
    n = len(data)
    if n == 0:
        return "an empty body"
    head = data[:16].lstrip()
    kinds = (
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive"),
        (b"<!DOCTYPE", "an HTML page"),
        (b"<html", "an HTML page"),
        (b"<?xml", "an XML document"),
        (b"{", "JSON or other text"),
        (b"\x1f\x8b", "gzip data"),
    )
    what = next((name for magic, name in kinds if head.lower().startswith(magic.lower())), None)
    if what is None:
        try:
            data[:512].decode("utf-8")
            what = "text"
        except UnicodeDecodeError:
            what = "binary data of no image format we read"
    declared = f", sent as {content_type}" if content_type else ""
    return f"{n} bytes of {what}{declared}"


# What Pillow raises for a damaged file: its AVIF plugin reports libavif's failures as RuntimeError.
PILLOW_ERRORS = (OSError, ValueError, SyntaxError, RuntimeError)
# How libavif, libheif and libtiff say an allocation failed, through Pillow's errors.
_OUT_OF_MEMORY = ("out of memory", "memory allocation", "cannot allocate", "insufficient memory")


def _not_decoded(header: Header, exc: Exception) -> Exception:
    """A decoder's failure: a MemoryError when it could not allocate (a 413 wherever it is caught), else a 422.

    libheif says "Memory allocation error" also when the coded picture is larger than the file
    says ("Security limit exceeded"): a damaged file, nothing allocated.
    """
    text = str(exc)
    if any(words in text.lower() for words in _OUT_OF_MEMORY) and "security limit" not in text.lower():
        return MemoryError(f"the {header.format} decoder could not allocate: {text}")
    return Unprocessable(f"the {header.format} image could not be decoded: {text}", reason=Reason.BAD_IMAGE)


def read_header(data: bytes, max_pixels: int | None = None) -> Header:
    """Identify the format and size from the header alone; refuse what we don't read (415),
    what is broken (422) and, given ``max_pixels``, what is larger than that (413).

    Pillow is handed the file only once ``header_scan`` found its structure within bounds.
    """
    structure = header_scan.scan(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                width, height = im.size
                fmt = "JPEG" if im.format == "MPO" else str(im.format)
                alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
                bits = 32 if im.mode in ("I", "F") else 16 if "16" in im.mode else 8  # Pillow's 32-bit modes
                if fmt == "PNG" and data[24:25] == b"\x10":  # its header's bit depth: Pillow opens some 16-bit PNGs as 8
                    bits = 16
                samples = structure.samples if fmt == "JPEG" else float(len(im.getbands()))
                if fmt == "WEBP" and webp_animated(data):  # libwebp composes its frames on an RGBA canvas
                    samples = 4.0
                if max_pixels is not None and width * height > max_pixels:
                    raise TooLarge(
                        f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
                        f"the limit is {max_pixels / 1e6:.1f} megapixels"
                    )
                if max_pixels is not None and structure.coded > max_pixels:
                    raise TooLarge(
                        f"this {width}x{height} image decodes through {structure.coded / 1e6:.1f} megapixels (a "
                        f"larger coded picture, canvas or tile); the limit is {max_pixels / 1e6:.1f} megapixels"
                    )
                # Only where EXIF sits in the header: Pillow decodes a whole PNG to find its EXIF.
                orientation = _orientation(im) if fmt in ("JPEG", "WEBP", "TIFF", *LEAN_PILLOW) else None
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"image declares too many pixels ({exc})") from None
    except UnidentifiedImageError:
        looks_like = _looks_like(data)
        if looks_like:
            raise Unprocessable(f"the {len(data)} bytes start like a {looks_like} image but it cannot be read",
                                reason=Reason.BAD_IMAGE) from None
        raise UnsupportedMedia(
            f"expected an image (JPEG, PNG, WebP, BMP, GIF, TIFF, HEIC or AVIF); received {what_bytes_are(data)}"
        ) from None
    except PILLOW_ERRORS as exc:
        size = vp8l.canvas(data)
        if size is not None and size[0] * size[1] >= WEBP_LARGE:
            # Pillow's WebP reader allocates two whole canvases just to open the file: past the memory a
            # request may take, that fails as an error without a reason of its own.
            raise TooLarge(f"this {size[0]}x{size[1]} WebP needs more memory to open than one request may take; "
                           "send a smaller image or another format") from None
        raise Unprocessable(f"the image header could not be read: {exc}", reason=Reason.BAD_IMAGE) from None
    if width <= 0 or height <= 0:
        raise Unprocessable(f"the {fmt} image declares an empty size {width}x{height}", reason=Reason.BAD_IMAGE)
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return Header(fmt, width, height, alpha, bits, structure.scans, structure.buffered, samples,
                  structure.coded, structure.tables)


WEBP_LARGE = 16_000_000  # pixels: from here a WebP that Pillow cannot open is taken as too large, not damaged


def webp_animated(data: bytes) -> bool:
    """Whether a WebP file says it is an animation (its VP8X flags): OpenCV then decodes it through
    libwebp's animation decoder, whatever its frames hold."""
    return data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & 0x02)


def _looks_like(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[data[8:12]]
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


def decode_image(
    data: bytes, *, max_pixels: int, gray: bool = False, reduce: int = 1, header: Header | None = None,
    max_bytes: int | None = None,
) -> Decoded:
    """Decode ``data`` to a uint8 image (3-channel BGR, or gray when asked).

    EXIF orientation is applied; transparent pixels become white (a canvas drawing's
    background is transparent, and its colour under the alpha is black); 16-bit is scaled to 8-bit.
    ``reduce`` (1, 2, 4 or 8) lets libjpeg decode at a fraction of the size.
    Raises 413 before allocating pixels when the header declares more than
    ``max_pixels``, 415 for bytes that are no image we read, 422 for a broken one.
    ``header``: what ``read_header(data, max_pixels)`` already answered, not to read it twice.
    ``max_bytes``: memory the decode may take; a file OpenCV refuses is handed to Pillow only
    when Pillow's copies (``pillow_bytes_per_pixel``) fit in it, else 413.
    """
    header = header or read_header(data, max_pixels)
    # At full size, gray comes from BGR like the book's cvtColor: libjpeg's own gray output differs
    # by a grey level here and there, and that moves the book's boxes by a pixel.
    direct_gray = gray and reduce > 1
    flags = _FLAGS.get((direct_gray, reduce))
    if flags is None:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, not {reduce}")
    image: np.ndarray | None
    if header.format == "PNG" and (not header.alpha or lean_alpha(header)):  # what libpng decodes
        png_data.check(data)
    if header.format in LEAN_PILLOW and not header.alpha:
        need = pillow_only_memory(header, gray, reduce)
        if max_bytes is not None and need > max_bytes:
            raise TooLarge(f"decoding this {header.width}x{header.height} {header.format} takes about "
                           f"{need // 2**20} MB; {max_bytes // 2**20} MB are left for it of the request's memory "
                           f"budget (MYSITE_REQUEST_MEMORY_MB): send a smaller image")
        image = _decode_pillow_only(data, header, gray, reduce)
        direct_gray = gray
    elif header.alpha:
        image = _flatten_large_png(data, header, gray, reduce) if lean_alpha(header) else None
        direct_gray = gray if image is not None else direct_gray
    elif header.format in PILLOW_ONLY:
        image = None
    else:
        image = _imdecode(data, header, direct_gray, reduce)
    if image is None or image.size == 0:
        if _run_length_bmp(data, header):
            raise Unprocessable("this BMP's run-length data is damaged (a run passes the end of its row, or the "
                                "data ends early)", reason=Reason.BAD_IMAGE)
        need = pillow_bytes_per_pixel(header) * header.pixels + header.tables
        if max_bytes is not None and need > max_bytes:
            raise TooLarge(f"OpenCV could not decode this {header.width}x{header.height} {header.format}, and Pillow "
                           f"would need about {need // 2**20} MB to try; {max_bytes // 2**20} MB are left for it of "
                           f"the request's memory budget (MYSITE_REQUEST_MEMORY_MB): send a smaller image")
        image = _decode_with_pillow(data, header, direct_gray, reduce)
    if gray and not direct_gray:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    # Long side over long side: right whichever way the decoder turned the picture.
    return Decoded(image, header, max(image.shape[:2]) / max(header.width, header.height))


def _imdecode(data: bytes, header: Header, gray: bool, reduce: int) -> np.ndarray | None:
    """OpenCV's decode, or None when OpenCV refuses the file (Pillow gets a try).

    Only libjpeg decodes at a fraction of the size. For every other format OpenCV's
    ``IMREAD_REDUCED_*`` decodes in full and then resizes to ``size // reduce``, which is
    an assertion error for a side shorter than ``reduce`` (a 3000x1 PNG): here the same
    resize is done with each side at least one pixel.
    """
    buf = np.frombuffer(data, np.uint8)
    native = header.format == "JPEG" or reduce == 1
    try:
        image = cv2.imdecode(buf, _FLAGS[(gray, reduce if native else 1)])
    except cv2.error:
        return None
    if image is None or native:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, w // reduce), max(1, h // reduce)), interpolation=cv2.INTER_LINEAR_EXACT)


# Formats decoded by Pillow alone: OpenCV's GIF decoder allocates its whole canvas (several bytes a
# pixel) before it finds it cannot read a file Pillow reads, so its cost could not be planned.
PILLOW_ONLY = frozenset({"GIF"})

# Pillow decodes run-length BMPs in Python, several steps a pixel: one OpenCV refuses is damaged, not Pillow's to try.
_BMP_RUN_LENGTH = (1, 2)  # BI_RLE8, BI_RLE4


def _run_length_bmp(data: bytes, header: Header) -> bool:
    info_size = int.from_bytes(data[14:18], "little")  # the 12-byte core header has no compression field
    return header.format == "BMP" and info_size >= 40 and int.from_bytes(data[30:34], "little") in _BMP_RUN_LENGTH


# Peak bytes per pixel of the Pillow path: its image, the RGBA backdrop and composite for
# transparency, the conversion, numpy's copy and the BGR one; WebP and AVIF readers hold canvases
# and planes of their own besides (measured by python -m bench.decode_memory).
PILLOW_BYTES_PER_PIXEL = 22
_PILLOW_FORMAT_BYTES_PER_PIXEL = {"WEBP": 32, "AVIF": 26}


def pillow_bytes_per_pixel(header: Header) -> int:
    """Peak bytes per pixel of decoding this image through Pillow (``_decode_with_pillow``)."""
    return _PILLOW_FORMAT_BYTES_PER_PIXEL.get(header.format, PILLOW_BYTES_PER_PIXEL)


# Transparent PNGs from this size up are flattened band by band from OpenCV's BGRA (about 8 bytes a
# pixel at the peak) instead of through Pillow (about 22); smaller ones, such as canvas drawings,
# keep Pillow's exact arithmetic.
LEAN_ALPHA_PIXELS = 4_000_000
# Pixels flattened at once: the band's 32-bit temporaries stay a few MB however wide the image.
BAND_PIXELS = 1 << 18


def lean_alpha(header: Header) -> bool:
    """Whether a transparent image is decoded the lean way (see ``LEAN_ALPHA_PIXELS``)."""
    return header.alpha and header.format == "PNG" and header.bits == 8 and \
        header.width * header.height >= LEAN_ALPHA_PIXELS


def _flatten_large_png(data: bytes, header: Header, gray: bool, reduce: int) -> np.ndarray | None:
    """A transparent 8-bit PNG flattened onto white, converted and reduced a band of rows at a time."""
    try:
        bgra = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4 or bgra.dtype != np.uint8:
        return None
    h, w = bgra.shape[:2]
    out = np.empty((h, w) if gray else (h, w, 3), np.uint8)
    rows = max(1, BAND_PIXELS // w)
    for y in range(0, h, rows):
        part = bgra[y: y + rows]
        alpha = part[..., 3:4].astype(np.uint32)
        flat = ((part[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
        out[y: y + rows] = cv2.cvtColor(flat, cv2.COLOR_BGR2GRAY) if gray else flat
    del bgra
    if reduce > 1:
        out = cv2.resize(out, (max(1, w // reduce), max(1, h // reduce)), interpolation=cv2.INTER_AREA)
    return out


def pillow_only_memory(header: Header, gray: bool, reduce: int) -> int:
    """Peak bytes of decoding a HEIC or AVIF without transparency (``_decode_pillow_only``)."""
    per_pixel = PILLOW_ONLY_BYTES_PER_PIXEL[header.format] if not gray and reduce == 1 \
        else PILLOW_ONLY_SMALL_BYTES_PER_PIXEL
    return per_pixel * header.pixels


def _decode_pillow_only(data: bytes, header: Header, gray: bool, reduce: int) -> np.ndarray:
    """HEIC and AVIF without transparency: one decoded copy at a time, reduced before it becomes an array."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            opened.seek(0)
            im: Image.Image = _upright(opened)
            if im is not opened:
                opened.close()  # one decoded copy at a time
            if im.mode != ("L" if gray else "RGB"):
                im = im.convert("L" if gray else "RGB")
            if reduce > 1:
                im = im.reduce(reduce)
            pixels = im.tobytes()
            size = im.size
    except PILLOW_ERRORS as exc:
        raise _not_decoded(header, exc) from None
    del im
    w, h = size
    if gray:
        return np.frombuffer(pixels, np.uint8).reshape(h, w).copy()
    return cv2.cvtColor(np.frombuffer(pixels, np.uint8).reshape(h, w, 3), cv2.COLOR_RGB2BGR)


def _decode_with_pillow(data: bytes, header: Header, gray: bool, reduce: int) -> np.ndarray:
    """Images with transparency (flattened onto white), and files OpenCV's codecs refuse."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            opened.seek(0)
            im: Image.Image = _upright(opened)
            if header.alpha:
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im.convert("RGBA"))
            im = im.convert("L" if gray else "RGB")
            if reduce > 1:
                im = im.reduce(reduce)
            arr = np.asarray(im)
    except PILLOW_ERRORS as exc:
        raise _not_decoded(header, exc) from None
    return arr if gray else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)


_EXIF_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}


def _upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation says, as ``ImageOps.exif_transpose`` turns it.

    Pillow's function also rewrites the EXIF without the orientation, which reads every value of
    every tag, however many the file holds; only the orientation is read here.
    """
    im.load()  # a PNG's EXIF may follow its pixels
    turn = _EXIF_TURNS.get(_orientation(im) or 1)
    return im if turn is None else im.transpose(turn)


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation; an EXIF of more entries than a JPEG's can hold is a 422 before Pillow reads them."""
    header_scan.exif(im.info.get("exif"))
    orientation = im.getexif().get(ExifTags.Base.Orientation)
    return orientation if isinstance(orientation, int) else None


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode an image as JPEG or PNG bytes."""
    height, width = image.shape[:2]
    if fmt != "png" and max(width, height) > JPEG_MAX_SIDE:
        raise Unprocessable(
            f"the answer would be a {width}x{height} picture; JPEG allows at most {JPEG_MAX_SIDE} pixels "
            f"a side: ask for format=png"
        )
    try:
        if fmt == "png":
            ok, buf = cv2.imencode(".png", image)
        else:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error:
        ok = False
    if not ok:
        raise Unprocessable(f"the {width}x{height} answer could not be encoded as {fmt}")
    return buf.tobytes()
