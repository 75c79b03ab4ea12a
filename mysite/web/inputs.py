"""Which bytes are the image? Every way a client may send one, in one place.

Accepted, in this order: ``?url=`` (GET, or POST without a body); a multipart
field ``image``, ``file`` or ``img`` (a file, with or without a filename as RFC 7578
allows, or a text field holding base64 or a data URL); a raw body sent as ``image/*``;
a JSON body ``{"image": ...}``; any other body holding base64 or a ``data:image/...;base64,`` URL.

Forms are read under limits, and a refusal names the limit passed: werkzeug raises the same bare
``RequestEntityTooLarge`` for too many multipart parts, a text field over its memory limit and a
body over the length limit, so the multipart stream is read through a counter of part boundaries.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import weakref
from collections.abc import Callable
from io import BytesIO
from typing import IO, Any, TypeVar
from urllib.parse import parse_qsl

from flask import Flask, Request, Response, g, request
from werkzeug.datastructures import Accept, CharsetAccept, FileStorage, Headers, LanguageAccept, MIMEAccept
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.http import parse_accept_header, parse_options_header
from werkzeug.utils import cached_property

from mysite.errors import BadRequest, Reason, TooLarge
from mysite.server.client_share import ENVIRON_KEY as CLIENT
from mysite.server.upload_deadline import BODY_DONE, BODY_ERROR, BODY_ROOM
from mysite.settings import Settings
from mysite.web import form_parts
from mysite.web.form_parts import MAX_PART_HEAD, MAX_PART_HEADS
from mysite.web.state import app_state

FIELDS = ("image", "file", "img")
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*")  # how image files begin
# base64 as clients send it: standard or URL-safe alphabet, maybe wrapped in lines (MIME). Checked
# with bytes.translate, not a regex: a pattern with line breaks on both sides of a repetition
# backtracks quadratically on a body of line breaks with one bad byte at the end.
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_LINE_BREAKS = b"\r\n"
_WHITESPACE = b" \t\n\r\x0b\x0c"
_MIN_BASE64 = 16  # shorter text is not taken for an image
# Bytes handled per C call: each call holds the GIL, so other threads (/healthz) run between pieces.
_PIECE = 1 << 20
_DATA_URL = re.compile(rb"\s*data:([\w.+/-]*)((?:;[\w=.+-]+)*),", re.IGNORECASE)
_DATA_URL_HEAD = 1024  # a data URL's "data:...;base64," starts within this many bytes

# The multipart parser's reads: gunicorn's body reader receives up to 1 MB at once and copies back
# what a smaller read leaves over, so werkzeug's 64 KB reads copied a large upload many times
# (and 1 MB reads cost more than these: docs/serving.md).
READ_SIZE = 256 * 1024


_BLANK_LINE = re.compile(rb"\r\n\r\n|\r\r|\n\n")  # where werkzeug's decoder ends a part's headers
_DELIMITER_END = b" \t\x0b\x0c\r\n"  # what may follow a delimiter: blanks (regex \s but line breaks), a line break
_BLANKS = re.compile(rb"[ \t\x0b\x0c]*")


class _PartHeads:
    """Follows a multipart body as it streams by, and refuses a part whose headers pass ``MAX_PART_HEAD``,
    or a body whose part headers together pass ``MAX_PART_HEADS``.

    werkzeug's decoder holds a part's headers until their blank line, however long, then runs
    regexes over all of them and reads their parameters in Python; werkzeug has no limit of its own
    there. Positions are counted from the body's start, so a delimiter or a blank line split between
    two reads is seen once.
    """

    def __init__(self, boundary: bytes) -> None:
        # Without its line break: werkzeug takes CRLF, a bare LF or a bare CR before it, and each of those
        # counted as a part's start here bounds at least what werkzeug reads as one.
        self._delimiter = b"--" + boundary
        self._recent = b"\r\n"  # the end of the last read; the body's first delimiter has no line break
        self._total = 0  # bytes fed
        self._decided = -len(self._recent)  # delimiters starting before this position are decided
        self._head: int | None = None  # where the current part's headers began; None: not in headers
        self._from: int | None = None  # where the blank line ending them is looked for; None: not known yet
        self._heads = 0  # bytes of the parts' headers ended so far
        self._closed = False

    def feed(self, data: bytes) -> None:
        if self._closed or not data:
            return
        window, base = self._recent + data, self._total - len(self._recent)  # window[i] is at base + i
        self._total += len(data)
        head = self._head
        while True:
            if head is None:
                head, self._from = self._next_head(window, base), None
                if head is None:
                    break
            if self._from is None:
                self._from = self._lines_from(window, base, head)
            end = None if self._from is None else _BLANK_LINE.search(
                window, max(self._from - base, 0), head - base + MAX_PART_HEAD + 4)
            size = (base + end.end() if end else self._total) - head
            self._check(size)
            if end is None:
                break
            self._decided, head, self._heads = base + end.end(), None, self._heads + size
        self._head = head
        self._recent = window[-(len(self._delimiter) + 3):]  # a delimiter, what follows it and what precedes it

    def _lines_from(self, window: bytes, base: int, head: int) -> int | None:
        """Where werkzeug starts looking for the blank line that ends a part's headers begun at ``head`` (the
        delimiter's end): past its blanks and its line break, which are the delimiter's, not a first line of
        headers. At a ``\r`` it could be ``\r\n``: a byte on, which finds the blank line no sooner. None while
        the blanks run to the window's end."""
        start = max(head - base, 0)
        match = _BLANKS.match(window, start)  # always, if only an empty run
        blanks = match.end() if match else start
        if blanks == len(window):
            return None
        return base + blanks + {13: 2, 10: 1}.get(window[blanks], 0)

    def _check(self, size: int) -> None:
        """Refuse the body if a part's headers of ``size`` bytes so far pass either limit."""
        if size > MAX_PART_HEAD:
            raise TooLarge(f"a part of the form has headers longer than {MAX_PART_HEAD} bytes; "
                           "a part needs only its Content-Disposition and Content-Type")
        if self._heads + size > MAX_PART_HEADS:
            raise TooLarge(f"the form's part headers come to more than {MAX_PART_HEADS} bytes; "
                           "a part needs only its Content-Disposition and Content-Type")

    def _next_head(self, window: bytes, base: int) -> int | None:
        """Where the next part's headers begin, past a delimiter of this window; None: no part begins here yet."""
        while True:
            found = window.find(self._delimiter, max(self._decided - base, 0))
            after = found + len(self._delimiter)
            if found < 0 or after + 1 >= len(window):  # none, or too near the end to tell what follows
                self._decided = base + (found if found >= 0 else max(len(window) - len(self._delimiter), 0))
                return None
            self._decided = base + found + 1
            if window[after:after + 2] == b"--" and found > 0 and window[found - 1] in b"\r\n":  # the closing one
                self._closed = True
                return None
            if window[after] in _DELIMITER_END:  # werkzeug's delimiter: blanks, then a line break
                return base + after


class _BoundaryCounter:
    """A read-only stream that counts how often ``delimiter`` went through it (across reads too), and
    splits a read at its first delimiter.

    werkzeug's multipart decoder, once its buffer holds a delimiter, searches the buffer for the
    boundary with a regex from the start: the closing boundary late in a 256 KB read cost a scan of
    the whole read. Split there, the read's second piece starts at the boundary and is matched at
    once. One split per read, not one per delimiter: a file of delimiters would make a piece each.
    """

    def __init__(self, stream: IO[bytes], boundary: bytes) -> None:
        self._stream, self._delimiter = stream, b"--" + boundary
        self._heads = _PartHeads(boundary)
        self._tail = b""
        self._held = b""
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if self._held:
            data, self._held = self._held, b""
            if size >= 0:
                return data
            rest = self._stream.read()
            self._count(rest)
            return data + rest
        data = self._stream.read(size)
        if self._count(data):
            cut = data.find(self._delimiter, 1)
            if cut > 0:
                data, self._held = data[:cut], data[cut:]
        return data

    def _count(self, data: bytes) -> int:
        """Count the delimiters that ``data`` completes; how many lie wholly inside it."""
        if not data:
            return 0
        # The delimiters in this read, and one split between the last read and this one (not the
        # whole read joined to the tail: that would copy it). Counted before the headers are
        # followed, so that a refusal of the headers can say the parts passed their limit first.
        keep = len(self._delimiter) - 1
        inside = data.count(self._delimiter)
        self.count += inside + (self._tail + data[:keep]).count(self._delimiter)
        self._tail = (self._tail + data)[-keep:] if len(data) < keep else data[len(data) - keep:]
        self._heads.feed(data)
        return inside

    def __getattr__(self, name: str) -> Any:
        # Another way of reading would skip the held piece and the count: only ``read`` reads.
        if name in ("read1", "readall", "readinto", "readinto1", "readline", "readlines"):
            raise AttributeError(f"{type(self).__name__} reads only with read(), not {name}()")
        return getattr(self._stream, name)


MIN_ESCAPES = 65536  # percent-escapes any urlencoded form may have, whatever its length


class LimitedFormParser(FormDataParser):
    """werkzeug's form parser, whose 413s name the limit passed."""

    def _parse_multipart(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> Any:
        boundary = options.get("boundary", "").encode("ascii", "replace")
        counter = _BoundaryCounter(stream, boundary) if boundary else stream
        try:
            return super()._parse_multipart(counter, mimetype, content_length, options)  # type: ignore[arg-type]
        except TooLarge:  # a limit of the part headers; had the parts passed theirs in the same reads, say that
            self._check_parts(counter)
            raise
        except RequestEntityTooLarge:
            self._check_parts(counter)
            raise TooLarge(f"a text field of the form is larger than the limit of {self.max_form_memory_size} "
                           "bytes for one field; send the image as a file part") from None

    def _check_parts(self, counter: IO[bytes] | _BoundaryCounter) -> None:
        """Refuse the form, naming the limit, if the parts counted so far pass ``max_form_parts``."""
        parts = counter.count - 1 if isinstance(counter, _BoundaryCounter) else 0
        if self.max_form_parts is not None and parts > self.max_form_parts:
            raise TooLarge(f"the form has more than {self.max_form_parts} parts ({parts} or more sent); "
                           f"the limit is {self.max_form_parts} parts") from None

    def _parse_urlencoded(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                          options: dict[str, str]) -> Any:
        # werkzeug counts no fields here; a million empty ones would each become an entry.
        body = stream.read()
        fields = body.count(b"&") + 1 if body else 0
        if self.max_form_parts is not None and fields > self.max_form_parts:
            raise TooLarge(f"the form has {fields} fields; the limit is {self.max_form_parts} fields")
        # Each %XX costs parse_qsl a step of Python (holding the GIL); base64 escapes one byte in 34.
        escapes, most = body.count(b"%"), max(MIN_ESCAPES, len(body) // 16)
        if escapes > most:
            raise TooLarge(f"the form has {escapes} percent-escapes in {len(body)} bytes; the limit is {most} "
                           "(one byte in 16): send the image as a multipart file part, or as raw base64")
        # Strict, not werkzeug's "werkzeug.url_quote": that handler is Python, run once per escape that is not
        # UTF-8. A form that is not UTF-8 raises here, and werkzeug reads it as empty, as it reads bytes that
        # are not.
        items = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        return stream, self.cls(items), self.cls()


def body_too_large(content_length: int | None, limit: int | None, upload_mb: float) -> str:
    """The message for werkzeug's own 413: the body over the length limit (the only one it raises bare)."""
    sent = f"is {content_length} bytes" if content_length else "is longer"
    return (f"the request body {sent}; the limit is {limit} bytes (the {upload_mb:g} MB upload limit "
            "as base64, plus room for the form around it)")


class _ImagePartParser(MultiPartParser):
    """Werkzeug's parser, keeping the bytes of an image field sent without a filename.

    Werkzeug files a part without a filename as text, decoded as UTF-8 with errors replaced:
    a JPEG's bytes would be lost. Read as Latin-1 instead (one character per byte),
    ``field_bytes`` gives them back exactly.
    """

    def get_part_charset(self, headers: Headers) -> str:
        declared = parse_options_header(headers.get("content-type", ""))[1].get("charset")
        name = parse_options_header(headers.get("content-disposition", ""))[1].get("name")
        if name is not None and photo_field(name) and not declared:
            return "latin-1"
        return super().get_part_charset(headers)


class _ImagePartsParser(FormDataParser):
    def _parse_multipart(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> tuple[IO[bytes], Any, Any]:
        parser = _ImagePartParser(stream_factory=self.stream_factory, max_form_memory_size=self.max_form_memory_size,
                                  max_form_parts=self.max_form_parts, cls=self.cls, buffer_size=READ_SIZE)
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class _FormParser(LimitedFormParser, _ImagePartsParser):
    """The limits' parser (``LimitedFormParser``) around the image parts' parser."""


def photo_field(name: str) -> bool:
    """A field that may hold a photo: the image routes' names, and DeepStack's ``image1``, ``image2``..."""
    return name in FIELDS or (name.startswith("image") and name[5:].isdigit())


def field_bytes(text: str) -> bytes:
    """The bytes of an image field's text: as sent when the part declared no charset (Latin-1, see above)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # a part that declared UTF-8 text
        return text.encode("utf-8")


# Characters of an Accept-* header that are read: werkzeug's parser is quadratic in a long run of
# blanks inside one entry, and gunicorn joins up to 100 repeated headers into one value. A
# browser's Accept is a short list.
MAX_ACCEPT = 1024
AnyAccept = TypeVar("AnyAccept", bound=Accept)


class MemoryRequest(Request):
    """A request whose uploads stay in memory (no uploaded byte is written to disk), its forms read under
    limits, and whose image fields keep their bytes with or without a filename; its Accept-* headers are
    read up to ``MAX_ACCEPT`` characters."""

    form_data_parser_class = _FormParser

    def _accept(self, header: str, cls: type[AnyAccept]) -> AnyAccept:
        return parse_accept_header(self.headers.get(header, "")[:MAX_ACCEPT], cls)

    @cached_property
    def accept_mimetypes(self) -> MIMEAccept:
        return self._accept("Accept", MIMEAccept)

    @cached_property
    def accept_charsets(self) -> CharsetAccept:
        return self._accept("Accept-Charset", CharsetAccept)

    @cached_property
    def accept_encodings(self) -> Accept:
        return self._accept("Accept-Encoding", Accept)

    @cached_property
    def accept_languages(self) -> LanguageAccept:
        return self._accept("Accept-Language", LanguageAccept)

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None, filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return BytesIO()


def params(request: Request, urlencoded: bool = False) -> dict[str, str]:
    """Request parameters: the query string, plus form fields of a multipart upload, and with ``urlencoded``
    those of a urlencoded form (an image route reads such a body as the image: ``curl -d @photo.b64``).

    A parameter sent twice (twice in the query, twice in the form, or in both) is a 400 naming
    it: which value a server takes differs from one framework to the next. Repeated image
    fields are no parameter: they are a batch (``several_images``).
    """
    if _not_text_form(request.query_string):  # werkzeug keeps such an escape as its three characters
        raise BadRequest("the query string is not UTF-8 text (its bytes, or what its percent-escapes stand for); "
                         "send it in UTF-8", reason=Reason.BAD_PARAMETER)
    sources = [request.args]
    if (request.mimetype == "multipart/form-data" or urlencoded) and body_is_form(request):
        sources.append(request.form)
        raw = request.get_data(cache=True) if request.mimetype != "multipart/form-data" else b""
        if raw and not request.form and _not_text_form(raw):  # werkzeug reads such a form as empty
            raise BadRequest("the form is not UTF-8 text (its bytes, or what its percent-escapes stand for); "
                             "send it in UTF-8", reason=Reason.BAD_PARAMETER)
    values: dict[str, str] = {}
    for source in sources:
        for name, given in source.lists():
            if photo_field(name) and source is not request.args:
                continue
            if source is not request.args and given == [""]:
                continue  # a form's blank field is a field left blank: not sent
            if len(given) > 1 or name in values:
                raise BadRequest(f"parameter {name[:40]!r} is sent more than once; send it once",
                                 reason=Reason.BAD_PARAMETER)
            values[name] = given[0]
    return values


def looks_like_image(data: bytes) -> bool:
    """Whether bytes begin as an image file does (JPEG, PNG, GIF, BMP, TIFF, WebP, HEIC or AVIF)."""
    if data.startswith(b"BM"):  # a BMP's reserved fields are zeros: a form may start "BM" too
        return data[6:10] == b"\x00\x00\x00\x00"
    return data.startswith(IMAGE_MAGIC) or data[4:8] == b"ftyp" or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def body_is_form(request: Request) -> bool:
    """Whether the body is a form to read fields from: multipart, or urlencoded but not an image sent with that
    type (curl --data-binary's default), whose bytes of '&' would be fields. A body so sent is kept."""
    if request.mimetype == "multipart/form-data":
        return True
    return request.mimetype == "application/x-www-form-urlencoded" and not looks_like_image(
        request.get_data(cache=True))


def _not_text_form(raw: bytes) -> bool:
    """Whether a urlencoded form's bytes, or what its escapes stand for, are not UTF-8."""
    try:
        parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return True
    return False


MAX_IMAGES = 16  # images in one request: bounds the work one request can ask for


def several_images(request: Request, max_bytes: int) -> list[bytes] | None:
    """Every file of repeated multipart ``image`` fields, when there are two or more; else None."""
    if request.mimetype != "multipart/form-data":
        return None
    files = request.files.getlist("image")
    texts = request.form.getlist("image")  # parts without a filename: an image's bytes, or base64 text
    if len(files) + len(texts) < 2:
        return None
    check_image_count(len(files) + len(texts))
    images = [file_bytes(u) for u in files] + [field_image(t, "form field image") for t in texts]
    return each_within(images, max_bytes)


def check_image_count(count: int) -> None:
    """413 when a request carries more than ``MAX_IMAGES`` images, before any is read."""
    if count > MAX_IMAGES:
        raise TooLarge(f"{count} images in one request; the limit is {MAX_IMAGES}")


def each_within(images: list[bytes], max_bytes: int) -> list[bytes]:
    """``images``, or 413 naming the first over the upload limit by its place."""
    return [_within(data, max_bytes, f"image {i}") for i, data in enumerate(images, start=1)]


def image_bytes(request: Request, max_bytes: int, fetch: Callable[[str], bytes]) -> bytes:
    """The image the client sent, as bytes (not yet decoded)."""
    url = request.args.get("url", "").strip()
    if request.method == "GET":
        if not url:
            raise BadRequest("Parameter url is not present", reason=Reason.MISSING_IMAGE)
        return fetch(url)
    data = _from_body(request)
    if data is None:
        if url:
            return fetch(url)
        raise BadRequest("Parameter image is not present", reason=Reason.MISSING_IMAGE)
    return _within(data, max_bytes, "the image")


def _within(data: bytes, max_bytes: int, what: str) -> bytes:
    """``data``, or 413 when it is over the upload limit."""
    if len(data) > max_bytes:
        raise TooLarge(f"{what} is {len(data)} bytes; the limit is {max_bytes} bytes")
    return data


def _from_body(request: Request) -> bytes | None:
    if request.mimetype == "multipart/form-data":
        for name in FIELDS:
            upload = request.files.get(name)
            if upload is not None:
                return file_bytes(upload)
        for name in FIELDS:
            text = request.form.get(name)
            if text:
                return field_image(text, f"form field {name}")
        return None
    body = request.get_data(cache=True)
    if not body or body.isspace():
        return None
    if request.mimetype.startswith("image/"):
        return body
    if request.mimetype == "application/json":
        return decode_text(_json_image(body), "JSON field image")
    return decode_text(body, "body", passthrough=True)


def file_bytes(upload: FileStorage) -> bytes:
    """A file part's bytes. ``getvalue`` hands over the memory stream's own buffer; ``read`` would copy it."""
    stream = upload.stream
    return stream.getvalue() if isinstance(stream, BytesIO) else upload.read()


def field_image(text: str, where: str) -> bytes:
    """A field without a filename: base64 text or a data URL (a page's canvas), else the image's own bytes."""
    return decode_text(field_bytes(text), where, passthrough=True)


# What a body costs a web worker while its request runs, in multiples of its length: the most any input
# of that kind took, measured (python -m bench.upload_memory). An image/* body, and a multipart body's
# file parts, are held as sent; anything else is text to decode, and text held as str may take four
# bytes a character.
RAW_COPIES = 3
TEXT_COPIES = 8


def body_share(req: Request, settings: Settings, page: bool = False) -> int:
    """Bytes this request's body may cost the worker while its request runs. A ``page`` copies a form's
    files into what it shows: all of its body is counted as text."""
    chunked = "chunked" in req.headers.get("Transfer-Encoding", "").lower()
    if chunked:
        length = settings.max_body_bytes  # told only as it arrives: counted at the most it may be
    elif req.content_length:
        if req.content_length > settings.max_body_bytes:
            return 0  # a 413 before it is read
        length = req.content_length
    else:
        return 0  # a ?url= fetch takes its room once the image's length is known (hold_fetched)
    if req.mimetype.startswith("image/"):
        return length * RAW_COPIES
    if page or chunked:  # a chunked body is not in yet
        return length * TEXT_COPIES
    files = form_parts.file_bytes(req.environ.get("wsgi.input"), req.mimetype, req.mimetype_params, length)
    return files * RAW_COPIES + (length - files) * TEXT_COPIES


# Where a request keeps what it holds of each room: in its own environ, as the page runs an API view in a
# request of its own (a ?url= upload), and each request gives back only its own share when it ends.
_BODY_SHARE, _ANSWER_SHARE = "mysite.body_share", "mysite.answer_share"


def hold_room(app: Flask) -> None:
    """Every request takes room for its body before anything reads it and gives it back when it ends; a
    picture answer takes its room once it is made (``answer_made``) and gives it back when it is gone
    (sent, or dropped)."""
    state = app_state(app)

    @app.before_request
    def _take() -> None:
        g.mysite_room, g.mysite_answers = state.room, state.answers
        error = request.environ.get(BODY_ERROR)  # the body could not be received (upload_deadline.py)
        page = app.view_functions.get(request.endpoint or "") in _SAYING_BODY_ERRORS
        if error is not None:
            if page:
                return None  # a page says it in its own words (``body_received``)
            raise error
        share = body_share(request, state.settings, page)
        if share:
            take_room(share)
        request.environ.pop(BODY_ROOM, lambda: None)()  # counted here now, no more among the bodies arriving

    @app.after_request
    def _hold_answer(response: Response) -> Response:
        share = request.environ.pop(_ANSWER_SHARE, 0)
        if share:
            client = request.environ.get(CLIENT)
            # The answer is its body: the picture, or the page around it.
            size = response.calculate_content_length()
            if size is not None and size != share:
                state.answers.give(share - size, client)
                share = size
            weakref.finalize(response, state.answers.give, share, client)
        return response

    @app.teardown_request
    def _give(_error: BaseException | None) -> None:
        done = request.environ.pop(BODY_DONE, None)
        if done is not None:
            done()
        share = request.environ.pop(_BODY_SHARE, 0)
        if share:
            state.room.give(share, request.environ.get(CLIENT))
        share = request.environ.pop(_ANSWER_SHARE, 0)  # an answer made, then not sent (an error after it)
        if share:
            state.answers.give(share, request.environ.get(CLIENT))


# Views that say themselves why their body could not be received (the page's form, as a page).
_SAYING_BODY_ERRORS: set[Callable[..., Any]] = set()
V = TypeVar("V", bound=Callable[..., Any])


def says_body_errors(view: V) -> V:
    """Mark ``view`` as one that calls ``body_received`` itself, to say why in its own words."""
    _SAYING_BODY_ERRORS.add(view)
    return view


def body_received() -> None:
    """Raise the error the request's body could not be received with, if any (``says_body_errors``)."""
    error = request.environ.get(BODY_ERROR)
    if error is not None:
        raise error


def take_room(share: int) -> None:
    """Hold ``share`` more bytes of the worker's room for this request, until it ends (in its client's part)."""
    held = request.environ.get(_BODY_SHARE, 0)
    g.mysite_room.take(share, held, client=request.environ.get(CLIENT))
    request.environ[_BODY_SHARE] = held + share


def answer_room() -> None:
    """Before a picture answer is made: a 503 now, not after the work, when the worker has no room to hold
    answers, or the request's client keeps its part of it in answers it has not read yet."""
    g.mysite_answers.admit(request.environ.get(CLIENT))


def answer_made(picture: int, base64: bool = False) -> None:
    """The picture answer is made, ``picture`` bytes (sent as base64 when ``base64``): it holds that much of
    the worker's answers' room, kept in its client's part, until it is gone; a 503 when there is no room.
    Again for the same request (the page shows an answer as base64): its share becomes the new size."""
    size = -(-picture // 3) * 4 if base64 else picture
    client = request.environ.get(CLIENT)
    held = request.environ.pop(_ANSWER_SHARE, 0)
    g.mysite_answers.keep(held, size, client)  # on Busy the request holds nothing
    request.environ[_ANSWER_SHARE] = size


def hold_fetched(length: int) -> None:
    """Room for an image of ``length`` bytes fetched by ``?url=``, before its first byte is read."""
    take_room(length * RAW_COPIES)


MAX_JSON_VALUES = 1000  # as many as a form's fields (werkzeug's ``max_form_parts``)


def _json_image(body: bytes) -> bytes:
    # json.loads builds every value at once, and a small one costs many times its bytes (a body
    # of "{}," becomes dicts). Each value past the first follows a comma or opens a container, so
    # counting those bytes bounds what the parse may build (commas in strings only over-count).
    values = body.count(b",") + body.count(b"[") + body.count(b"{")
    if values > MAX_JSON_VALUES:
        raise TooLarge(f"the JSON body has {values} commas and brackets; the limit is {MAX_JSON_VALUES} "
                       "values (send {\"image\": \"<base64>\"})")
    try:
        doc: Any = json.loads(_json_text(body))
    except ValueError as exc:
        raise BadRequest(f"the JSON body could not be parsed: {exc}") from None
    except RecursionError:  # arrays nested about a thousand deep exhaust the parser's stack
        raise BadRequest("the JSON body is nested too deeply; send {\"image\": \"<base64>\"}") from None
    value = doc.get("image") if isinstance(doc, dict) else None
    if not isinstance(value, str) or not value:
        raise BadRequest("Parameter image is not present (expected a JSON body like {\"image\": \"<base64>\"})",
                         reason=Reason.MISSING_IMAGE)
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" is valid JSON but no text
        raise BadRequest("the JSON field image holds characters that are not text (a lone surrogate); "
                         "it must be base64 or a data URL") from None


def _json_text(body: bytes) -> str:
    """The body as json reads it, but UTF-8 read as Latin-1 (a character per byte): only the image field is
    used, and it must be ASCII; one character past Latin-1 would otherwise make the whole text four
    bytes a character. UTF-16 or 32 is read strictly, not with json's ``surrogatepass``: that handler runs
    once per lone surrogate, in one call holding the GIL, and a lone surrogate is no text anyway."""
    encoding = json.detect_encoding(body)
    if encoding.startswith("utf-8"):
        return body.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the JSON body is not {encoding.upper()} text ({exc.reason} at byte {exc.start}); "
                         "send it as UTF-8") from None


def decode_text(text: bytes, where: str, passthrough: bool = False) -> bytes:
    """Bytes from a data URL or base64 text; with ``passthrough``, anything else is returned as sent.

    Linear in the text, in pieces of ``_PIECE`` bytes: no regex runs over the text itself.
    """
    match = _DATA_URL.match(text[:_DATA_URL_HEAD])
    if match:
        if b"base64" not in match.group(2).lower():
            raise BadRequest(f"the data URL in the {where} must be base64-encoded", reason=Reason.BAD_IMAGE)
        compact = _without(text[match.end():], _WHITESPACE)
    else:
        compact = _without(text, _LINE_BREAKS)
        if not is_base64(compact):
            if passthrough:
                return text
            raise BadRequest(f"the {where} holds neither an image nor base64 text", reason=Reason.BAD_IMAGE)
    try:
        return _b64decode(compact, urlsafe=b"-" in compact or b"_" in compact)
    except (binascii.Error, ValueError):
        if passthrough:
            return text
        raise BadRequest(f"the {where} is not valid base64", reason=Reason.BAD_IMAGE) from None


def _without(text: bytes, drop: bytes) -> bytes:
    """``text`` without the bytes in ``drop``."""
    return b"".join(text[i:i + _PIECE].translate(None, drop) for i in range(0, len(text), _PIECE))


def is_base64(compact: bytes) -> bool:
    """At least 16 characters of the base64 alphabets, then at most two ``=`` (no line breaks in it)."""
    end = len(compact)
    while end > 0 and len(compact) - end < 2 and compact[end - 1] == 0x3D:  # "="
        end -= 1
    if (end > 0 and compact[end - 1] == 0x3D) or end < _MIN_BASE64:
        return False
    return not any(compact[i:min(i + _PIECE, end)].translate(None, _B64_ALPHABET) for i in range(0, end, _PIECE))


def _b64decode(compact: bytes, urlsafe: bool) -> bytes:
    out = []
    for i in range(0, len(compact), _PIECE):  # _PIECE is a multiple of 4: every piece decodes alone
        piece = compact[i:i + _PIECE]
        if len(piece) < _PIECE:
            piece += b"=" * (-len(piece) % 4)
        out.append(base64.urlsafe_b64decode(piece) if urlsafe else base64.b64decode(piece, validate=True))
    return b"".join(out)
