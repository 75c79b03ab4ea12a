"""``python -m mysite.models list|fetch``: the declared model files, and getting them.

``list`` shows every model of models.toml with each of its files: where it is
looked for, its size and its status. ``fetch [NAME...]`` downloads the files a
model's ``sources`` declare into ``MYSITE_MODEL_DIR`` (or ``--dir``; without either, the
package's data folder, where the site looks then), checks
each against the digest its entry names (sha256, sha1 as the publishers of
MobileNet-SSD and the ONNX zoo give it, or git_blob: the id of the file in a
git tree, for a URL pinned to a commit), deletes and refuses a file that does
not match or an HTML page where a file was expected, and skips files already
there and valid. A file may have several sources: they are tried in order
until one gives the file. Without names it fetches what is declared but not found.

A host that cannot be connected to within ``--connect-timeout`` (3 s) is remembered in the
model folder for ``--remember`` seconds (an hour; ``models/reach.py``) and its sources are
skipped meanwhile; once two hosts are unreachable and none was reached, the rest are not tried
either (no route out). An instance without egress so spends a few seconds per deploy, not minutes.
"""

from __future__ import annotations

import argparse
import bz2
import os
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
from urllib3.exceptions import NewConnectionError, ReadTimeoutError

from mysite import settings as settings_mod
from mysite.models.digests import Source, by_file, check, file_digest, sources
from mysite.models.kinds import DATA_DIR, companion_path
from mysite.models.reach import Reachability, host_of
from mysite.models.registry import resolve
from mysite.models.schema import ModelSpec, read_specs
from mysite.settings import Settings

MAX_BYTES = 2 * 1024**3  # nothing we declare comes near; a runaway download must stop somewhere
CHUNK = 256 * 1024
HTML_TYPES = ("text/html", "application/xhtml+xml")


class FetchError(Exception):
    """A file could not be fetched or did not verify; the message says which and why."""


class Unreachable(FetchError):
    """No connection to the source's host at all (no route, refused, no such name, connect timeout)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _progress(out: IO[str]) -> Callable[[str, int, int | None], None]:
    """A progress printer: one line per tenth of a known size, else per 8 MB."""
    last: dict[str, int] = {}

    def report(name: str, done: int, total: int | None) -> None:
        step = (done * 10 // total) if total else done // (8 * 1024 * 1024)
        if last.get(name) != step:
            last[name] = step
            size = f"/{total / 1e6:.1f}" if total else ""
            pct = f" ({done * 100 // total} %)" if total else ""
            print(f"  {name}: {done / 1e6:.1f}{size} MB{pct}", file=out, flush=True)

    return report


def download(source: Source, dest: Path, timeout: float, progress: Callable[[str, int, int | None], None],
             connect_timeout: float | None = None) -> str:
    """Fetch one file to ``dest`` from one source; verified, or deleted and refused. Returns what happened."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            _stream(source, f, timeout, progress, connect_timeout)
        if source.archive_sha256 and (got := file_digest(tmp, "sha256")) != source.archive_sha256:
            raise FetchError(f"{source.file}: the archive's sha256 is {got}, but the entry says "
                             f"{source.archive_sha256}: refused and deleted")
        if source.member:
            _extract(tmp, source.member)
        elif source.url.endswith(".bz2"):
            _bunzip(tmp)
        if source.algo:
            got = file_digest(tmp, source.algo)
            if got != source.digest:
                raise FetchError(
                    f"{source.file}: {source.algo} is {got}, but the entry says {source.digest}: refused and deleted"
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if source.algo is None:
        return "downloaded; NOT verified (the publisher gives no digest)"
    return f"downloaded, {source.algo} verified"


def _unreachable(source: Source, exc: requests.RequestException, connect_timeout: float) -> Unreachable | None:
    """The error as ``Unreachable`` when no connection was made at all, else None."""
    if isinstance(exc, requests.ConnectTimeout):
        why = f"no connection within {connect_timeout:g} s"
    else:
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        if not isinstance(reason, NewConnectionError):
            return None
        text = str(reason)
        if "Failed to resolve" in text:
            why = f"cannot resolve {host_of(source.url).rpartition(':')[0] or host_of(source.url)}"
        else:
            why = text.rpartition("Failed to establish a new connection: ")[2]
    return Unreachable(f"{source.file}: {source.url} could not be reached: {why}", why)


def _stream(source: Source, f: IO[bytes], timeout: float,
            progress: Callable[[str, int, int | None], None], connect_timeout: float | None = None) -> None:
    connect = timeout if connect_timeout is None else min(connect_timeout, timeout)
    try:
        with requests.get(source.url, stream=True, timeout=(connect, timeout)) as r:
            if r.status_code != 200:
                raise FetchError(f"{source.file}: {source.url} answered HTTP {r.status_code}")
            if r.headers.get("Content-Type", "").split(";")[0].strip().lower() in HTML_TYPES:
                # A sign-in, quota or "confirm download" page (Google Drive's, for one), not the file.
                raise FetchError(f"{source.file}: {source.url} answered an HTML page, not the file")
            total = int(r.headers["Content-Length"]) if r.headers.get("Content-Length", "").isdigit() else None
            done = 0
            for block in r.iter_content(CHUNK):
                done += len(block)
                if done > MAX_BYTES:
                    raise FetchError(f"{source.file}: more than {MAX_BYTES} bytes, stopped")
                if done == len(block) and block.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
                    raise FetchError(f"{source.file}: {source.url} answered an HTML page, not the file")
                f.write(block)
                progress(source.file, done, total)
    except (requests.Timeout, requests.ConnectionError) as exc:
        unreachable = _unreachable(source, exc, connect)
        if unreachable is not None:
            raise unreachable from None
        # A body that stalls mid-stream surfaces as a ConnectionError wrapping urllib3's ReadTimeoutError.
        if isinstance(exc, requests.Timeout) or isinstance(exc.args[0] if exc.args else None, ReadTimeoutError):
            raise FetchError(f"{source.file}: {source.url} did not answer within {timeout:g} s") from None
        raise FetchError(f"{source.file}: {source.url} failed: {exc}") from None
    except requests.RequestException as exc:
        raise FetchError(f"{source.file}: {source.url} failed: {exc}") from None


def _extract(archive: Path, member: str) -> None:
    """Replace a downloaded zip or tar archive by the one member we want."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                data = z.read(member)
        else:
            with tarfile.open(archive) as t:
                f = t.extractfile(member)
                if f is None:
                    raise KeyError(f"{member} is not a file")
                data = f.read()
    except (zipfile.BadZipFile, tarfile.TarError, KeyError) as exc:
        raise FetchError(f"{archive.name}: cannot take {member} out of the download: {exc}") from None
    archive.write_bytes(data)


@dataclass
class Attempts:
    """How this fetch reaches hosts: its timeouts, the remembered unreachable hosts, what it saw."""

    timeout: float = 60.0
    connect_timeout: float = 3.0
    reach: Reachability | None = None
    reached: bool = False
    unreachable_now: set[str] | None = None

    def skip_reason(self, url: str) -> str | None:
        if self.reach is None:
            return None
        remembered = self.reach.skip_reason(url)
        if remembered:
            return remembered
        known = {h for h in self.reach.hosts if self.reach.skip_reason(f"http://{h}/")} | (self.unreachable_now or set())
        if not self.reached and len(known) >= 2:
            return (f"not tried: {len(known)} hosts could not be reached and none was ({', '.join(sorted(known))}): "
                    "no route out? (--retry-unreachable tries every source)")
        return None

    def failed(self, url: str, why: str) -> None:
        self.unreachable_now = (self.unreachable_now or set()) | {host_of(url)}
        if self.reach is not None:
            self.reach.failed(url, why)

    def ok(self, url: str) -> None:
        self.reached = True
        if self.reach is not None:
            self.reach.reached(url)


def _bunzip(path: Path) -> None:
    """Replace a bzip2-compressed download by its content."""
    try:
        path.write_bytes(bz2.decompress(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise FetchError(f"{path.name}: not a bzip2 file: {exc}") from None


def fetch(names: Iterable[str], specs: Mapping[str, ModelSpec], settings: Settings, dest: Path,
          timeout: float = 60.0, out: IO[str] = sys.stdout, attempts: Attempts | None = None) -> int:
    """Fetch the named models (all missing ones when no names); the number of files that failed."""
    names = list(names)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise FetchError(f"unknown model(s) {', '.join(unknown)}; declared: {', '.join(specs)}")
    if not names:
        names = [n for n, s in specs.items() if sources(s) and not _found(s, settings)]
        if not names:
            print("every model that declares sources is already there", file=out)
    failed = 0
    progress = _progress(out)
    attempts = attempts or Attempts(timeout=timeout, connect_timeout=timeout)
    for name in names:
        todo = sources(specs[name])
        if not todo:
            print(f"{name}: declares no sources; put its file in {dest} yourself", file=out)
            failed += 1
            continue
        for file, candidates in by_file(todo).items():
            failed += not _fetch_file(name, file, candidates, dest, attempts, progress, out)
    return failed


def _fetch_file(name: str, file: str, candidates: list[Source], dest: Path, attempts: Attempts,
                progress: Callable[[str, int, int | None], None], out: IO[str]) -> bool:
    """One file from the first of its sources that gives it, verified; False when none did."""
    if check(dest / file, candidates) == "ok":
        print(f"{name}: {file}: already there, digest verified: skipped", file=out)
        return True
    for i, source in enumerate(candidates, 1):
        of = f" (source {i} of {len(candidates)})" if len(candidates) > 1 else ""
        print(f"{name}: {file} <- {source.url}{of}", file=out, flush=True)
        skip = attempts.skip_reason(source.url)
        if skip:
            print(f"  FAILED: {file}: {skip}", file=out)
            continue
        try:
            print(f"  {download(source, dest / file, attempts.timeout, progress, attempts.connect_timeout)}", file=out)
            attempts.ok(source.url)
            return True
        except Unreachable as exc:
            attempts.failed(source.url, exc.why)
            print(f"  FAILED: {exc}", file=out)
        except FetchError as exc:
            attempts.ok(source.url)  # it answered: the host is reachable
            print(f"  FAILED: {exc}", file=out)
    return False


def _found(spec: ModelSpec, settings: Settings) -> bool:
    path = resolve(spec, settings)
    return path is not None and path.is_file()


def rows(specs: Mapping[str, ModelSpec], settings: Settings) -> list[tuple[str, str, str, str]]:
    """(model, path, size, status) for every file of every model."""
    out = []
    for name, spec in specs.items():
        main = resolve(spec, settings)
        declared = by_file(sources(spec))
        files = [spec.file] if spec.file else []
        files += [f for f in declared if f not in files]
        if not files:
            out.append((name, "(no file)", "", "built in"))
        for file in files:
            if file == spec.file and main is not None:
                path = main
            elif main is not None:
                path = companion_path(main, file)
            else:
                path = (settings.model_dir or DATA_DIR) / file
            size = f"{path.stat().st_size / 1e6:.2f} MB" if path.is_file() else "-"
            out.append((name, str(path), size, check(path, declared.get(file))))
    return out


def main(argv: list[str] | None = None, specs: Mapping[str, ModelSpec] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mysite.models", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every model's files: path, size, status")
    f = sub.add_parser("fetch", help="download declared files and verify their digests")
    f.add_argument("names", nargs="*", help="models to fetch (default: every declared model not found)")
    f.add_argument("--dir", type=Path,
                   help="where to put the files (default: MYSITE_MODEL_DIR, else the package's data folder)")
    f.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default 60)")
    f.add_argument("--connect-timeout", type=float, default=3.0,
                   help="seconds to wait for a connection to a host (default 3)")
    f.add_argument("--remember", type=float, default=3600.0,
                   help="seconds a host that could not be reached is not tried again (default 3600)")
    f.add_argument("--retry-unreachable", action="store_true", help="try every source now, remembered or not")
    args = ap.parse_args(argv)
    try:
        settings = settings_mod.load()
    except settings_mod.SettingsError as exc:
        print(f"invalid setting: {exc}", file=sys.stderr)
        return 2
    specs = read_specs() if specs is None else specs
    if args.command == "list":
        table = rows(specs, settings)
        widths = [max(len(r[i]) for r in table) for i in range(3)]
        for r in table:
            print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
        return 0
    # Where the site looks: MYSITE_MODEL_DIR, else the package's own data folder.
    dest = args.dir or settings.model_dir or DATA_DIR
    try:
        reach = Reachability.load(dest, 0 if args.retry_unreachable else args.remember)
        attempts = Attempts(args.timeout, args.connect_timeout, reach)
        failed = fetch(args.names, specs, settings, dest, args.timeout, attempts=attempts)
    except FetchError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
