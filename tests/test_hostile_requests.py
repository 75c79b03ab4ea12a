"""Requests built to cost a lot or to be read two ways, in-process: each gets its clear 4xx, quickly.

Before: ``min_confidence=abc`` on /v1/vision/face was a 200 (the Haar detector does not read
it), ``min_size=٥`` and ``1_0`` were numbers, a repeated parameter's first value won, a
1,500-part form was "larger than the upload limit of 10 MB", and header floods (1.5 million
JPEG comment markers, 400,000 PNG text chunks) and progressive scan bombs were read for
seconds to minutes.
"""

from __future__ import annotations

import base64
import html
import io
import struct

import cv2
import numpy as np
import pytest
from PIL import BmpImagePlugin, Image
from tests_helpers import read

from mysite.errors import TooLarge, Unprocessable, UnsupportedMedia
from mysite.params import Param
from mysite.vision import header_scan
from mysite.vision.decode import read_header
from testkit import hostile_inputs as hi


def _post(client, path: str, **kw):
    r = client.post(path, **kw)
    return r.status_code, r.get_json()


@pytest.mark.parametrize("value", ["abc", "NaN", "nan", "inf", "-Infinity", "1e308", "2", "-0.5", "1e309"])
def test_deepstack_face_min_confidence_is_checked_whichever_detector_runs(client, group_jpg, value):
    status, body = _post(client, "/v1/vision/face", data={"image": (io.BytesIO(group_jpg), "a.jpg"),
                                                          "min_confidence": value})
    assert status == 400 and body["reason"] == "bad_parameter" and "min_confidence" in body["message"], body


def test_deepstack_face_with_a_valid_min_confidence_still_answers(client, group_jpg):
    status, body = _post(client, "/v1/vision/face", data={"image": (io.BytesIO(group_jpg), "a.jpg"),
                                                          "min_confidence": "0.4"})
    assert status == 200 and body["success"] is True and len(body["predictions"]) == 17


@pytest.mark.parametrize("value", ["\u0665", "1_0", " 5", "5 ", "+5", "0x10", "5.0", "\uff15", "9" * 41])
def test_integers_are_ascii_decimal_digits_only(client, group_jpg, value):
    status, body = _post(client, "/detect", query_string={"min_size": value}, data=group_jpg,
                         content_type="image/jpeg")
    assert status == 400 and body["reason"] == "bad_parameter" and "min_size" in body["message"], body


@pytest.mark.parametrize("raw, value", [("25", 25), ("-3", -3), ("007", 7)])
def test_plain_integers_are_read(raw, value):
    assert Param("n", int, 0).convert(raw) == value


@pytest.mark.parametrize("raw, value", [("1.5", 1.5), (".5", 0.5), ("-2", -2.0), ("1e-3", 0.001), ("3.", 3.0)])
def test_plain_decimals_are_read(raw, value):
    assert Param("x", float, 0.0).convert(raw) == value


@pytest.mark.parametrize("raw", ["nan", "inf", "1e999", "1_0.5", "\u0661.\u0665", " 1.5", "1.5e", "e5", "."])
def test_other_numbers_are_refused(raw):
    with pytest.raises(Exception) as info:
        Param("x", float, 0.0).convert(raw)
    assert getattr(info.value, "code", None) == 400


def test_an_echoed_value_is_cut_short(client, group_jpg):
    status, body = _post(client, "/detect", query_string={"min_size": "x" * 100_000}, data=group_jpg,
                         content_type="image/jpeg")
    assert status == 400 and len(body["message"]) < 200


@pytest.mark.parametrize("where", ["query", "form", "both"])
def test_a_repeated_parameter_is_a_400_naming_it(client, group_jpg, where):
    if where == "query":
        kw = {"query_string": "min_neighbors=3&min_neighbors=5", "data": {"image": (io.BytesIO(group_jpg), "a.jpg")}}
    elif where == "form":
        kw = {"data": {"image": (io.BytesIO(group_jpg), "a.jpg"), "min_neighbors": ["3", "5"]}}
    else:
        kw = {"query_string": "min_neighbors=3", "data": {"image": (io.BytesIO(group_jpg), "a.jpg"),
                                                          "min_neighbors": "5"}}
    status, body = _post(client, "/detect", **kw)
    assert status == 400 and body["reason"] == "bad_parameter" and "min_neighbors" in body["message"], body


def _routes_taking_forms(app) -> list[tuple[str, str, bool]]:
    """Every route a form can be sent to: method, path, and whether it reads a urlencoded form (an image
    route reads a urlencoded body as the image, as ``curl -d @photo.b64`` sends it)."""
    routes = {(method, rule.rule.replace("<path:name>", "someone"), rule.endpoint.split(".")[0] != "api")
              for rule in app.url_map.iter_rules() for method in rule.methods & {"POST", "DELETE"}}
    return sorted(routes)


URLENCODED = "application/x-www-form-urlencoded"


def test_a_parameter_sent_twice_is_a_400_on_every_route_that_takes_a_form(app, client):
    # DeepStack's urlencoded delete took the first of two userids, and a form's over the query's.
    routes = _routes_taking_forms(app)
    assert {("POST", "/v1/vision/face/delete", True), ("DELETE", "/faces/someone", True),
            ("POST", "/", True), ("POST", "/detect", False)} <= set(routes)
    ways = [({"query_string": "userid=a&userid=b"}, True), ({"data": {"userid": ["a", "b"]}}, True),
            ({"query_string": "userid=a", "data": {"userid": "b"}}, True),
            ({"data": "userid=a&userid=b", "content_type": URLENCODED}, False),
            ({"query_string": "userid=a", "data": "userid=b", "content_type": URLENCODED}, False)]
    for method, path, reads_urlencoded in routes:
        for kw, multipart in ways:
            if "data" in kw and multipart:
                kw = {**kw, "content_type": "multipart/form-data"}
            r = client.open(path, method=method, **kw)
            said = html.unescape(r.get_data(as_text=True))  # the page says it in HTML
            if multipart or reads_urlencoded:
                assert r.status_code == 400 and "'userid' is sent more than once" in said, (method, path, kw, said)
            else:  # the urlencoded body is an image route's image, not a form
                assert "more than once" not in said, (method, path, kw, said)


def test_repeated_image_fields_are_still_a_batch(client, group_jpg, cat_jpg):
    status, body = _post(client, "/detect", data={"image": [(io.BytesIO(group_jpg), "a.jpg"),
                                                            (io.BytesIO(cat_jpg), "b.jpg")]})
    assert status == 200 and len(body["results"]) == 2


def test_a_form_of_too_many_parts_says_parts(client):
    status, body = _post(client, "/detect", data=hi.multipart_parts(1500), content_type=hi.MULTIPART)
    assert status == 413 and body["reason"] == "too_large"
    assert "parts" in body["message"] and "MB" not in body["message"], body


def test_a_body_over_the_length_limit_says_bytes(make_app):
    client = make_app({"MYSITE_MAX_UPLOAD_MB": "1"}).test_client()
    status, body = _post(client, "/detect", data=b"\xff" * (2 * 1024 * 1024), content_type="image/jpeg")
    assert status == 413 and str(2 * 1024 * 1024) in body["message"] and "bytes" in body["message"], body


def test_a_urlencoded_form_of_too_many_fields_says_fields(make_app):
    client = make_app({"MYSITE_API_KEYS": "k" * 20}).test_client()  # with keys, the form is read for api_key
    status, body = _post(client, "/detect", data=hi.urlencoded_fields(1500),
                         content_type="application/x-www-form-urlencoded")
    assert status == 413 and "1500 fields" in body["message"], body


def test_a_urlencoded_form_of_many_percent_escapes_is_refused_before_it_is_parsed(client, make_app):
    # Each %XX is a step of Python under the GIL: 12 MB of them held a worker for 2 s.
    keyed = make_app({"MYSITE_API_KEYS": "k" * 20}).test_client()  # with keys, the form is read for api_key
    status, body = _post(keyed, "/detect", data=b"x=" + "é%41".encode() * 300_000,
                         content_type="application/x-www-form-urlencoded")
    assert status == 413 and "300000 percent-escapes" in body["message"] and "multipart" in body["message"], body
    r = client.post("/", data=b"endpoint=%2Fdetect&x=" + "é%41".encode() * 300_000,
                    content_type="application/x-www-form-urlencoded", headers={"Accept": "text/html"})
    assert r.status_code == 413 and r.mimetype == "text/html", r.get_data()[:300]  # the page says it in the page
    assert "300001 percent-escapes" in r.get_data(as_text=True)
    # Under the bound the form is read: the page answers for it (no image sent).
    r = client.post("/", data=b"endpoint=%2Fdetect&x=" + b"%41" * 60_000,
                    content_type="application/x-www-form-urlencoded", headers={"Accept": "text/html"})
    assert r.status_code == 400 and "Choose an image file" in r.get_data(as_text=True)


def _costly_heads(parts: int, head: int, image: bytes = b"") -> bytes:
    """A form of ``parts`` text parts (and an image part, if given), each part's headers ``head`` bytes as
    counted (the line break after the delimiter, the lines, the blank line), the Content-Type's
    parameters in the shape werkzeug's ``parse_options_header`` reads slowest."""
    def one(i: int) -> bytes:
        lines = b'Content-Disposition: form-data; name="x%d"\r\nContent-Type: text/plain' % i
        fill = head - len(lines) - 6
        return b"--hostile\r\n" + lines + (b'; a="\\' * fill)[:fill] + b"\r\n\r\nx\r\n"
    file = b'--hostile\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
    return b"".join(one(i) for i in range(parts)) + (file + image + b"\r\n" if image else b"") + b"--hostile--\r\n"


@pytest.mark.parametrize("breaks", [b"\n", b"\r", b"\x0b\r\n", b"\r\n\r\n", b"\n\n", b"\r\r"],
                         ids=["LF", "CR", "VT-CRLF", "CRLF-CRLF", "LF-LF", "CR-CR"])
def test_part_headers_are_bounded_whatever_line_breaks_werkzeug_takes(client, breaks):
    # werkzeug takes a bare LF or CR for a line break, and blanks after a delimiter; the bound looked for
    # CRLF only, so the same 850 parts of 16 KB headers held a worker for 11-15 s again. Then it looked for
    # the blank line from the delimiter's own line break, which werkzeug takes as the delimiter's: a
    # second line break after it was a blank line to the bound, and the start of 16 KB of headers to werkzeug.
    first = b'--hostile\r\nContent-Disposition: form-data; name="first"\r\n\r\nx\r\n'  # the body's start is found
    body = first + _costly_heads(850, 16_300)
    if breaks in (b"\x0b\r\n", b"\r\n\r\n", b"\n\n", b"\r\r"):
        body = first + _costly_heads(850, 16_300).replace(b"--hostile\r\n", b"--hostile" + breaks)
    else:
        body = body.replace(b"\r\n", breaks)
    status, answer = _post(client, "/detect", data=body, content_type=hi.MULTIPART)
    assert status == 413 and "headers longer than 4096 bytes" in answer["message"], answer


@pytest.mark.parametrize("keys", [False, True])
def test_part_headers_are_bounded_in_all_before_werkzeug_reads_their_parameters(make_app, keys):
    # werkzeug reads each part's header parameters a step of Python at a time, about twice a part: 850 parts
    # with 16 KB of them each, under the old per-part limit, held a worker for seconds, and with keys set,
    # before the 401 (the form is read for api_key). ``python -m bench.part_heads`` measures the cost.
    client = make_app({"MYSITE_API_KEYS": "k" * 24} if keys else {}).test_client()
    body = _costly_heads(850, 16_300)
    status, answer = _post(client, "/detect", data=body, content_type=hi.MULTIPART)
    assert status == 413 and "headers longer than 4096 bytes" in answer["message"], answer
    status, answer = _post(client, "/detect", data=_costly_heads(40, 1700), content_type=hi.MULTIPART)
    assert status == 413 and "part headers come to more than 65536 bytes" in answer["message"], answer


def test_a_form_with_part_headers_at_the_limits_is_read(client, group_jpg):
    from werkzeug.test import EnvironBuilder

    from mysite.web.form_parts import MAX_PART_HEAD, MAX_PART_HEADS
    from mysite.web.inputs import MemoryRequest

    image_head = len(b'\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n')
    body = _costly_heads((MAX_PART_HEADS - image_head) // MAX_PART_HEAD, MAX_PART_HEAD, group_jpg)
    form = MemoryRequest(EnvironBuilder(method="POST", data=body, content_type=hi.MULTIPART).get_environ()).form
    assert len(form) == MAX_PART_HEADS // MAX_PART_HEAD - 1
    status, answer = _post(client, "/detect", data=body, content_type=hi.MULTIPART)
    assert status == 200 and len(answer["result"]) == 17, answer


def test_a_urlencoded_form_whose_escapes_are_not_utf_8_reads_as_empty():
    # werkzeug's "werkzeug.url_quote" handler is Python, run once per escape that is not UTF-8: a form of
    # them cost several times one of ASCII escapes. Decoded strictly, such a form is no text: empty.
    from werkzeug.test import EnvironBuilder

    from mysite.web.inputs import MemoryRequest

    def form(body: bytes) -> dict:
        environ = EnvironBuilder(method="POST", data=body, content_type="application/x-www-form-urlencoded").get_environ()
        return MemoryRequest(environ).form.to_dict()

    padding = b"A" * 13  # one byte in 16 escaped: the most a form may have
    ascii, other = b"x=" + (b"%41" + padding) * 150_000, b"x=" + (b"%FF" + padding) * 150_000
    assert form(ascii) == {"x": "A" * 14 * 150_000} and form(other) == {}
    assert form(b"userid=%C3%A9l%C3%A8ve&api_key=k") == {"userid": "élève", "api_key": "k"}


def test_the_newline_body_is_a_415(client):
    status, body = _post(client, "/detect", data=hi.newline_body(300_000))
    assert status == 415 and body["reason"] == "unsupported_media"


def test_base64_wrapped_in_lines_is_still_decoded(client, group_jpg):
    for text in (base64.encodebytes(group_jpg), base64.b64encode(group_jpg),
                 base64.urlsafe_b64encode(group_jpg).rstrip(b"="), b"data:image/jpeg;base64," +
                 base64.encodebytes(group_jpg)):
        status, body = _post(client, "/detect", data=text)
        assert status == 200 and len(body["result"]) == 17, body


# Floods of header structures, each as large as the issue's: refused from a bounded walk, before Pillow.
FLOODS = [
    ("jpeg-com", lambda: hi.jpeg_com_flood(1_500_000)),
    ("jpeg-fill", lambda: hi.jpeg_fill_bytes(5_000_000)),
    ("jpeg-stray", lambda: hi.jpeg_stray_bytes(5_000_000)),
    ("png-text", lambda: hi.png_text_flood(400_000)),
    ("png-trailing", lambda: hi.png_trailing_flood(400_000, bad_crc=True)),
    ("png-zipped-text", lambda: hi.png_zipped_text(63)),
    ("png-profiles", lambda: hi.png_zipped_text(500, b"iCCP")),
    ("gif-blocks", lambda: hi.gif_block_flood(2_000_000)),
    ("gif-stray-then-blocks", lambda: hi.gif_block_flood(2_000_000, stray=1)),
    ("gif-stray-bytes", lambda: hi.gif_block_flood(0, stray=1_000_000)),
    ("webp-orientation-fractions", lambda: hi.webp_orientation_flood(300_000)),
    ("tiff-tags", lambda: hi.tiff_tag_flood(65_535)),
    ("tiff-fractions", lambda: hi.tiff_fraction_flood(1_100_000)),
    ("bigtiff-fractions", lambda: hi.tiff_fraction_flood(1_100_000, big=True)),
    ("tiff-strips", lambda: hi.tiff_strip_flood(500_000)),
    ("jpeg-scans", lambda: hi.jpeg_scan_bomb(15_000)),
    ("jpeg-photoshop", lambda: hi.jpeg_photoshop_flood(150)),
]


@pytest.mark.parametrize("name, make", FLOODS, ids=[n for n, _ in FLOODS])
def test_header_floods_are_refused_as_bad_images(client, name, make):
    status, body = _post(client, "/detect", data=make(), content_type="application/octet-stream")
    assert status == 422 and body["reason"] == "bad_image", body


def test_real_photos_are_read_with_their_scans_counted(group_jpg, car_jpg):
    group = read_header(group_jpg)  # the group photo is a progressive JPEG
    assert group.buffered and 2 <= group.scans <= 20
    baseline = Image.open(io.BytesIO(car_jpg))
    buf = io.BytesIO()
    baseline.save(buf, "JPEG", quality=90)
    assert read_header(buf.getvalue()).scans == 1 and not read_header(buf.getvalue()).buffered
    buf = io.BytesIO()
    baseline.save(buf, "JPEG", quality=90, progressive=True)
    assert read_header(buf.getvalue()).buffered


def test_a_baseline_jpeg_with_a_scan_per_component_is_counted_as_libjpeg_buffers_it(client):
    # Sequential, yet libjpeg keeps every coefficient of the image when a scan lacks some components.
    apart = read_header(hi.component_scans_jpeg(640, 480))
    assert apart.buffered and apart.scans == 3
    assert not read_header(hi.component_scans_jpeg(640, 480, interleaved=True)).buffered
    assert read_header(hi.component_scans_jpeg(640, 480, components=1)).buffered is False


def test_a_lossless_jpeg_is_refused_before_it_is_decoded(client):
    # libjpeg decodes it only at full size, whatever reduction was planned and counted.
    status, body = _post(client, "/detect", data=hi.lossless_jpeg_header(8000, 5000), content_type="image/jpeg")
    assert status == 415 and body["reason"] == "unsupported_media" and "lossless JPEG" in body["message"], body


def test_an_arithmetic_coded_jpeg_is_refused_before_it_is_decoded(client):
    # libjpeg decodes it, at many times the time per scan of a Huffman-coded one: a few kilobytes held a
    # CV process past the work deadline. No browser shows one.
    import cv2

    arithmetic = read("cat_arith.jpg")
    assert cv2.imdecode(np.frombuffer(arithmetic, np.uint8), cv2.IMREAD_COLOR).shape == (1334, 1000, 3)
    status, body = _post(client, "/catfacedetection", data=arithmetic, content_type="image/jpeg")
    assert status == 415 and body["reason"] == "unsupported_media" and "arithmetic-coded" in body["message"], body
    assert _post(client, "/catfacedetection", data=read("cat.jpg"), content_type="image/jpeg")[0] == 200
    progressive, _ = hi.progressive_jpeg(400, 300)
    at = progressive.index(b"\xff\xc2")
    with pytest.raises(UnsupportedMedia, match="arithmetic-coded"):
        read_header(progressive[:at] + b"\xff\xca" + progressive[at + 2:])


def test_a_tiffs_jpeg_strips_are_held_to_what_tiff_writers_make(client, group_jpg):
    # libtiff hands a JPEG-compressed strip to libjpeg, arithmetic coding and many scans included: an outside
    # tester's 9.9 MB TIFF held a CV process past the work deadline, with no JPEG rule applied to it.
    import cv2
    from PIL import Image

    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))
    plain = cv2.imencode(".jpg", gray)[1].tobytes()
    progressive = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    refused = {
        "arithmetic-coded": hi.jpeg_tiff(plain.replace(b"\xff\xc0", b"\xff\xc9", 1), 64, 48),
        "progressive": hi.jpeg_tiff(progressive, 64, 48),
        "several scans": hi.jpeg_tiff(plain[:-2] + plain[plain.index(b"\xff\xda"):], 64, 48),
        "TIFF 6.0": hi.jpeg_tiff(plain, 64, 48, compression=6),
    }
    for words, data in refused.items():
        status, body = _post(client, "/canny", data=data, content_type="image/tiff")
        assert status == 415 and body["reason"] == "unsupported_media" and words in body["message"], (words, body)
    assert _post(client, "/canny", data=hi.jpeg_tiff(plain, 64, 48), content_type="image/tiff")[0] == 200
    for mode in ("RGB", "L"):  # strips of JPEG data and their tables apart, as libtiff writes them
        buf = io.BytesIO()
        Image.open(io.BytesIO(group_jpg)).convert(mode).save(buf, "TIFF", compression="jpeg")
        assert _post(client, "/detect", data=buf.getvalue(), content_type="image/tiff")[0] == 200


def test_a_tiffs_jpeg_strips_are_found_however_its_directory_is_written():
    # libtiff reads a directory leniently (signed types, counts past one, the first of two copies, either
    # offsets tag): each way hid an arithmetic strip from a check that read only the usual form.
    import cv2

    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))
    plain = cv2.imencode(".jpg", gray)[1].tobytes()
    costly = plain.replace(b"\xff\xc0", b"\xff\xc9", 1)
    hidden = {
        "compression as SSHORT": hi.jpeg_tiff(costly, 64, 48, kinds={259: 8}),
        "compression, two values": hi.jpeg_tiff(costly, 64, 48, extra=[(259, 3, 2, 7)], compression=1),
        "compression twice": hi.jpeg_tiff(costly, 64, 48, extra=[(259, 3, 1, 1)]),
        "offsets as SLONG": hi.jpeg_tiff(costly, 64, 48, kinds={273: 9}),
        "offsets as IFD": hi.jpeg_tiff(costly, 64, 48, kinds={273: 13}),
        "tile offsets too": hi.jpeg_tiff(costly, 64, 48, extra=[(324, 4, 1, 4096)]),
    }
    for how, data in hidden.items():
        with pytest.raises(UnsupportedMedia, match="arithmetic-coded"):
            read_header(data)
            pytest.fail(how)
    # A restart marker, or a stuffed zero, has no length: read as if it had, the next two bytes hid the stream
    # behind them, which libjpeg reads on to.
    for no_length in (b"\xff\xd0", b"\xff\x00"):
        behind = plain[:2] + no_length + len(costly).to_bytes(2, "big") + costly[2:]
        with pytest.raises(Unprocessable, match="damaged"):
            read_header(hi.jpeg_tiff(behind, 64, 48))
    # A frame taller than the TIFF, its scan without some components: libjpeg then holds every coefficient of
    # the frame, sized by the frame (a 488-byte TIFF of 1024x8 took 130 MB).
    colour = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    at = colour.index(b"\xff\xda")
    one_of_three = colour[:at] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + colour[at + 14:]
    with pytest.raises(UnsupportedMedia, match="leaves some of its components out"):
        read_header(hi.jpeg_tiff(one_of_three, 64, 48))
    # A comment between scans may hold what looks like the end of the stream.
    scan = plain[plain.index(b"\xff\xda"):-2]
    with pytest.raises(UnsupportedMedia, match="several scans"):
        read_header(hi.jpeg_tiff(plain[:-2] + b"\xff\xfe\x00\x04\xff\xd9" + scan + b"\xff\xd9", 64, 48))
    # Strips that overlap would each be read to the end of the data: refused past twice its length.
    # Eight strips start apart, each a comment that skips to one frame and scan shared by all.
    starts = b"".join(b"\xff\xd8\xff\xfe" + (2 + 6 * (7 - i)).to_bytes(2, "big") for i in range(8))
    frame = b"\xff\xc0\x00\x0b\x08\x00\x30\x00\x40\x01\x01\x11\x00"
    stream = starts + frame + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + bytes(1 << 20) + b"\xff\xd9"
    with pytest.raises(Unprocessable, match="overlap"):
        read_header(hi.jpeg_tiff(stream, 64, 48, offsets=[8 + 6 * i for i in range(8)]))


def test_a_tiles_size_is_counted_whatever_integer_type_says_it():
    tiled = hi.tiff_tiled(np.zeros((64, 64), np.uint8), 4096)
    at = tiled.index(struct.pack("<HH", 322, 4))
    sshort = tiled[:at] + struct.pack("<HHI", 322, 8, 1) + struct.pack("<H", 4096).ljust(4, b"\0") + tiled[at + 12:]
    assert read_header(sshort).coded == 4096 * 4096
    with pytest.raises(TooLarge):
        read_header(sshort, max_pixels=10_000_000)


def test_sequential_scans_count_as_whole_passes_whatever_band_they_name(client):
    # libjpeg decodes all 64 coefficients of every block in a sequential scan; one scan repeated, each
    # naming the DC coefficient alone, was counted a 64th of a pass a scan.
    limit = header_scan.MAX_SCANS / header_scan.SCANS_PER_PASS
    assert read_header(hi.sequential_scan_repeats(int(limit))).scans == limit
    beyond = hi.sequential_scan_repeats(int(limit) + 1)
    status, body = _post(client, "/detect", data=beyond, content_type="image/jpeg")
    assert status == 422 and body["reason"] == "bad_image" and "pass over its coefficients" in body["message"], body


def test_photoshop_segments_are_read_up_to_a_megabyte():
    assert read_header(hi.jpeg_photoshop_flood(16)).format == "JPEG"
    with pytest.raises(Unprocessable, match="Photoshop segments"):
        read_header(hi.jpeg_photoshop_flood(17))


def test_png_chunks_are_counted_to_the_end():
    limit, all_chunks = header_scan.MAX_PNG_CHUNKS, header_scan.MAX_PNG_ALL_CHUNKS
    assert read_header(hi.png_trailing_flood(limit)).format == "PNG"
    with pytest.raises(Unprocessable, match=f"more than {limit} chunks after its image data"):
        read_header(hi.png_trailing_flood(limit + 1))
    assert read_header(hi.png_split_idat(all_chunks - 3)).format == "PNG"
    with pytest.raises(Unprocessable, match=f"more than {all_chunks} chunks;"):
        read_header(hi.png_split_idat(all_chunks))
    with pytest.raises(Unprocessable, match="b'zzZz' chunk at byte .* is damaged"):
        read_header(hi.png_trailing_flood(3, bad_crc=True))


def test_a_png_with_some_compressed_text_and_a_profile_is_read(client):
    for data in (hi.png_zipped_text(3), hi.png_zipped_text(3, b"iTXt"), hi.png_zipped_text(1, b"iCCP")):
        status, body = _post(client, "/detect", data=data, content_type="image/png")
        assert status == 200 and body["result"] == [], body


def test_an_animated_png_of_many_frames_is_read(client, group_jpg):
    small = Image.open(io.BytesIO(group_jpg)).resize((64, 48))
    frames = [small.rotate(i) for i in range(600)]  # two chunks a frame
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    status, body = _post(client, "/detect", data=buf.getvalue(), content_type="image/png")
    assert status == 200 and "result" in body, body


@pytest.mark.filterwarnings("ignore:Metadata Warning")  # Pillow on the fractions it was sent
def test_tiff_numbers_are_counted_up_to_the_limit():
    # Each strip is two numbers (its offset and its length); the rest of the directory is seven.
    strips = (header_scan.MAX_TIFF_NUMBERS - 7) // 2
    assert read_header(hi.tiff_strip_flood(strips)).height == strips
    with pytest.raises(Unprocessable, match="holds 131075 numbers"):
        read_header(hi.tiff_strip_flood(strips + 2))
    fractions = header_scan.MAX_TIFF_NUMBERS // header_scan.TIFF_FRACTION_WEIGHT - 1
    assert read_header(hi.tiff_fraction_flood(fractions, big=True)).format == "TIFF"


@pytest.mark.parametrize("options", [{"strip_size": 640 * 3}, {"compression": "tiff_lzw"}, {"big_tiff": True}],
                         ids=["row-strips", "lzw", "bigtiff"])
def test_real_tiffs_are_read(client, group_jpg, options):
    buf = io.BytesIO()
    Image.open(io.BytesIO(group_jpg)).save(buf, "TIFF", **options)
    status, body = _post(client, "/detect", data=buf.getvalue(), content_type="image/tiff")
    assert status == 200 and len(body["result"]) == 17, body


def test_a_tiled_tiff_is_read_and_costed_at_its_tile(client, group_jpg):
    gray = np.asarray(Image.open(io.BytesIO(group_jpg)).convert("L"))
    tiled = hi.tiff_tiled(gray, 256)
    assert read_header(tiled).pixels == 640 * 482  # six tiles of 256 x 256: the picture is the larger
    status, body = _post(client, "/detect", data=tiled, content_type="image/tiff")
    assert status == 200 and len(body["result"]) == 17, body
    # One tile far larger than the picture: the decoders fill all of it (OpenCV 1 GB at most, then Pillow).
    header = read_header(hi.tiff_tiled(np.zeros((64, 64), np.uint8), 8192))
    assert (header.width, header.height, header.pixels) == (64, 64, 8192 * 8192)
    status, body = _post(client, "/detect", data=hi.tiff_tiled(np.zeros((64, 64), np.uint8), 8192),
                          content_type="image/tiff")
    assert status == 413 and "decodes through 67.1 megapixels" in body["message"], body
    status, body = _post(client, "/detect", data=hi.tiff_tiled(np.zeros((64, 64), np.uint8), 4096),
                          content_type="image/tiff")
    assert status == 413 and "64x64 TIFF (through 16.8 megapixels at once) needs" in body["message"], body


def test_a_run_length_bmp_is_read_by_opencv(client, group_jpg):
    gray = np.asarray(Image.open(io.BytesIO(group_jpg)).convert("L"))
    status, body = _post(client, "/detect", data=hi.bmp_run_length(gray), content_type="image/bmp")
    assert status == 200 and len(body["result"]) == 17, body


@pytest.mark.parametrize("bits", [8, 4])
def test_a_run_length_bmp_opencv_refuses_is_a_422_not_pillows_to_decode(client, monkeypatch, bits):
    def python_decoder(*args):
        raise AssertionError("Pillow's run-length decoder ran")

    monkeypatch.setattr(BmpImagePlugin.BmpRleDecoder, "decode", python_decoder)
    status, body = _post(client, "/detect", data=hi.bmp_run_past_the_row(2600, bits), content_type="image/bmp")
    assert status == 422 and body["reason"] == "bad_image" and "run-length" in body["message"], body


def test_a_scan_count_at_the_limit_is_accepted():
    data = hi.jpeg_scan_bomb(header_scan.MAX_SCANS - 20, 400, 300)
    assert read_header(data).scans <= header_scan.MAX_SCANS


def test_refinement_scans_are_refused_by_the_passes_they_make_within_the_scan_limit(client):
    # Each repeat refines the whole AC band of the luminance (two thirds of the blocks at 4:2:0).
    limit = header_scan.MAX_SCANS / header_scan.SCANS_PER_PASS
    within = hi.jpeg_refinement_bomb(int((limit - 4) * 1.5))
    assert read_header(within).scans < header_scan.MAX_SCANS
    beyond = hi.jpeg_refinement_bomb(int((limit + 1) * 1.5))
    assert len(beyond) < 100_000
    status, body = _post(client, "/detect", data=beyond, content_type="image/jpeg")
    assert status == 422 and body["reason"] == "bad_image" and "pass over its coefficients" in body["message"], body


def test_the_passes_count_every_scan_whatever_a_comment_or_a_duplicate_id_says():
    # A comment holding what reads as a scan header claiming 255 components made the count jump past the real
    # scans after it; a frame giving two components one id counted the scans of that id at the smaller share,
    # where libjpeg takes the first, the luma. Each file is within the scan limit and past the passes.
    for data in (hi.jpeg_hidden_scans(100), hi.duplicate_id_jpeg(50)):
        assert data.count(b"\xff\xda") <= header_scan.MAX_SCANS
        with pytest.raises(Unprocessable, match="pass over its coefficients"):
            read_header(data)


def test_a_16_bit_png_with_transparency_is_counted_at_its_depth():
    # Pillow opens it as 8-bit RGBA; OpenCV decodes it at 16 bits, twice the bytes the flattening counted.
    import cv2

    png = cv2.imencode(".png", np.full((40, 30, 4), 30000, np.uint16))[1].tobytes()
    header = read_header(png)
    assert header.alpha and header.bits == 16


def test_an_accept_header_is_read_only_as_far_as_max_accept(client, group_jpg):
    from mysite.web.inputs import MAX_ACCEPT

    # JSON preferred in the part that is read; past it, a stronger wish for PNG that is not read.
    accept = "application/json;q=0.5," + "\t" * MAX_ACCEPT + ",image/png"
    r = client.post("/detect", data=group_jpg, content_type="image/jpeg", headers={"Accept": accept})
    assert r.status_code == 200 and r.mimetype == "application/json"
    r = client.post("/detect", data=group_jpg, content_type="image/jpeg", headers={"Accept": accept[-100:]})
    assert r.status_code == 200 and r.mimetype == "image/png"  # the same wish, read, is answered
    flood = dict(hi.accept_flood(1, 200_000))  # one header: the test client has no line limit
    r = client.get("/", headers=flood)
    assert r.status_code == 200 and "routes" in r.get_json()


@pytest.mark.parametrize("body", [b"[" + b"{}," * 300_000 + b"{}]", b"[" + b'"ab",' * 200_000 + b'"ab"]',
                                  b'{"image": "' + b"A" * 64 + b'", "x": [' + b"0," * 500_000 + b"0]}"])
def test_a_json_body_of_many_values_is_refused_before_it_is_parsed(body):
    # json.loads builds every value at once: 14 MB of "{}," were 229 MB of dicts and a second of the GIL.
    import tracemalloc

    from mysite.errors import TooLarge
    from mysite.web.inputs import _json_image

    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="the limit is 1000 values"):
            _json_image(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(body) // 4, peak


def test_json_is_read_with_a_bom_in_utf_16_and_with_any_text_beside_the_image(client, group_jpg):
    import json

    b64 = base64.b64encode(group_jpg).decode()
    bodies = [b"\xef\xbb\xbf" + json.dumps({"image": b64}).encode(),
              json.dumps({"image": b64}).encode("utf-16"),
              json.dumps({"name": "张三 \N{GRINNING FACE}", "image": b64}, ensure_ascii=False).encode("utf-32-be"),
              json.dumps({"name": "张三 \N{GRINNING FACE}", "image": b64}, ensure_ascii=False).encode(),
              json.dumps({"name": "张三 \N{GRINNING FACE}", "image": b64}).encode()]
    for body in bodies:
        status, answer = _post(client, "/detect", data=body, content_type="application/json")
        assert status == 200 and len(answer["result"]) == 17, answer


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_json_in_utf_16_or_32_that_is_no_text_is_a_400_read_in_one_pass(client, encoding):
    # Read with json's "surrogatepass", every lone surrogate ran the codec's error handler, all in one
    # call holding the GIL: 14 MB of them held it for over a second. Decoded strictly, the first one ends it.
    from mysite.errors import BadRequest
    from mysite.web.inputs import _json_image

    surrogate = "\ud800".encode(encoding, "surrogatepass")
    body = "{".encode(encoding) + surrogate * (4_000_000 // len(surrogate))
    with pytest.raises(BadRequest, match=f"the JSON body is not {encoding.upper()} text"):
        _json_image(body)
    status, answer = _post(client, "/detect", data=body, content_type="application/json")
    assert status == 400 and "send it as UTF-8" in answer["message"], answer


def test_json_holding_text_past_latin_1_costs_no_more_than_ascii():
    # Read as it was (UTF-8 to str), one emoji made the whole text, and the image string, four bytes a character.
    import tracemalloc

    from mysite.errors import ApiError
    from mysite.web.inputs import _json_image, decode_text

    peaks = []
    for tail in (b"", "\N{GRINNING FACE}".encode()):
        body = b'{"image": "' + b"QUFB" * 500_000 + tail + b'"}'
        tracemalloc.start()
        try:
            try:
                decode_text(_json_image(body), "JSON field image")
            except ApiError:
                pass
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.3, peaks


def test_a_photo_sent_with_the_urlencoded_type_is_no_form_to_the_key_check(make_app):
    # Read as a form for its api_key, a JPEG's bytes of '&' were fields: 413 "the form has 1465 fields"
    # where the answer is the 401.
    picture = cv2.imdecode(np.frombuffer(read("astronaut.png"), np.uint8), cv2.IMREAD_COLOR)
    big = cv2.imencode(".jpg", cv2.resize(picture, (1600, 1600)), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert big.count(b"&") > 1000
    client = make_app({"MYSITE_API_KEYS": "k" * 24}).test_client()
    r = client.post("/detect", data=big, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 401, r.get_json()
    r = client.post("/detect", data=big, content_type="application/x-www-form-urlencoded", headers={"X-API-Key": "k" * 24})
    assert r.status_code == 200, r.get_json()
