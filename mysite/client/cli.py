"""The client of the site (the book's demo_request grown up) as a command: one image or a batch (``batch.py``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from mysite.client import (
    DEFAULT_SERVER,
    MAX_ANSWER_BYTES,
    MAX_RETRIES,
    MAX_TIMEOUT,
    Client,
    ClientError,
    HTTPError,
    batch,
    draw_file,
    imagepaths,
    json_or_none,
    printable,
    write_image,
)
from mysite.client.routes import route_for

FACE_COMMANDS = ("register", "faces", "forget")
TIMEOUT_HELP = "seconds each try may take once started: connecting, the answer's headers and body (60)"
_MAX_ANSWER_MB = MAX_ANSWER_BYTES / 2**20
MAX_ANSWER_HELP = f"refuse an answer longer than this, in MiB once decoded ({_MAX_ANSWER_MB:g})"


def main(argv: Sequence[str] | None = None) -> int:
    """One request, its answer printed as JSON, or a batch (``batch.py``); or a registered-faces command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = _first_word(argv)
    if first is not None and argv[first] in FACE_COMMANDS:  # also after options: --server URL register ...
        return faces_command([argv[first], *argv[:first], *argv[first + 1:]])
    args = _parser().parse_intermixed_args(argv)
    try:
        params = dict(_key_value(p) for p in args.param)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if _is_batch(args):
        return _batch(args, params)
    if (not args.paths) == (args.url is None):
        print("error: give an image path or --url (one of them)", file=sys.stderr)
        return 2
    problem = _draw_problem(Path(args.draw)) if args.draw else None
    if problem:
        print(f"error: --draw {printable(args.draw)}: {problem}", file=sys.stderr)
        return 2
    if args.draw and Path(args.draw).suffix.lower() == ".png":
        # An endpoint that answers a picture (Canny) then sends it lossless; JSON answers ignore format.
        params.setdefault("format", "png")
    client = Client(args.server, retries=args.retries, timeout=args.timeout, max_answer_bytes=_bytes(args.max_answer))
    image = Path(args.paths[0]) if args.paths else None
    if image is not None and not image.is_file():
        print(f"error: no such image file: {printable(str(image))}", file=sys.stderr)
        return 2
    try:
        response = client.request("POST" if image else "GET", args.endpoint, image=image, url=args.url,
                                  params=params)
        print_json(response, verbose=args.verbose)
        if not response.ok:
            print(f"error: {HTTPError(response)}", file=sys.stderr)  # control characters escaped
            return 1
        if args.draw:
            _draw(client, args, image, params, response)
            print(f"wrote {args.draw}", file=sys.stderr)
    except ClientError as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 1 if isinstance(exc, HTTPError) else 3
    return 0


def faces_command(argv: Sequence[str]) -> int:
    """``register NAME PHOTO...``, ``faces`` (who is registered) or ``forget NAME``: the answer as JSON."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=None,
                        help=f"server base URL (default: $MYSITE_SERVER or {DEFAULT_SERVER})")
    common.add_argument("--retries", type=_retries, default=5, help="retries on connection failure or 502/503/504 (5)")
    common.add_argument("--timeout", type=_seconds, default=60.0, help=TIMEOUT_HELP)
    common.add_argument("--max-answer", type=_positive, default=_MAX_ANSWER_MB, metavar="MB", help=MAX_ANSWER_HELP)
    p = argparse.ArgumentParser(prog="python -m mysite.client", description="The server's registered faces. "
                                "Recognize with: python -m mysite.client recognize PHOTO [--draw OUT]")
    sub = p.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", parents=[common], help="register a person from photos (one face each)")
    reg.add_argument("name")
    reg.add_argument("photos", nargs="+", metavar="PHOTO")
    sub.add_parser("faces", parents=[common], help="list the registered people")
    forget = sub.add_parser("forget", parents=[common], help="delete every face of a person")
    forget.add_argument("name")
    args = p.parse_args(argv)
    client = Client(args.server, retries=args.retries, timeout=args.timeout, max_answer_bytes=_bytes(args.max_answer))
    try:
        if args.command == "register":
            missing = [f for f in args.photos if not Path(f).is_file()]
            if missing:
                print(f"error: no such image file: {printable(missing[0])}", file=sys.stderr)
                return 2
            body: Any = client.register(args.name, [Path(f) for f in args.photos])
        elif args.command == "faces":
            body = client.faces()
        else:
            body = {"name": args.name, "deleted": client.forget(args.name)}
    except ClientError as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 1 if isinstance(exc, HTTPError) else 3
    print(json.dumps(body))
    return 0


def print_json(response: requests.Response, *, verbose: bool = False, out: Any = None, err: Any = None) -> None:
    """The answer as one line of JSON on ``out`` (a picture answer is described: type and size);
    with ``verbose``, the status line and headers on ``err`` first."""
    out, err = out or sys.stdout, err or sys.stderr
    if verbose:
        print(f"status code: {response.status_code}", file=err)
        print(f"headers: {json.dumps(dict(response.headers))}", file=err)
    body = json_or_none(response)
    if body is None:
        kind = response.headers.get("Content-Type", "")
        body = {"content_type": kind, "bytes": len(response.content)}
        if kind.startswith("image/"):
            print("the answer is a picture: --draw OUT saves it", file=err)
    print(json.dumps(body), file=out)


def _is_batch(args: argparse.Namespace) -> bool:
    """Several images, a folder, a glob, stdin, or any batch option: the batch client."""
    options = (args.out, args.concurrency, args.per_request, args.draw_dir, args.progress)
    if any(o is not None for o in options) or len(args.paths) > 1:
        return True
    return any(p == "-" or os.path.isdir(p) or (imagepaths.is_glob(p) and not os.path.exists(p)) for p in args.paths)


def _batch(args: argparse.Namespace, params: dict[str, str]) -> int:
    if args.url or args.draw:
        print("error: --url and --draw are for one image; a batch takes paths (and --draw-dir)", file=sys.stderr)
        return 2
    concurrency = batch.DEFAULT_CONCURRENCY if args.concurrency is None else args.concurrency
    per_request = batch.DEFAULT_PER_REQUEST if args.per_request is None else args.per_request
    if not 1 <= concurrency <= 64 or not 1 <= per_request <= batch.MAX_PER_REQUEST:
        print(f"error: --concurrency goes from 1 to 64, --per-request from 1 to {batch.MAX_PER_REQUEST}",
              file=sys.stderr)
        return 2
    if per_request > 1 and not route_for(args.endpoint).several:
        print(f"note: {route_for(args.endpoint).path} takes one image per request; --per-request is ignored",
              file=sys.stderr)
    options = batch.Options(
        server=args.server, endpoint=args.endpoint, params=params, concurrency=concurrency,
        per_request=per_request, out=Path(args.out) if args.out else None,
        draw_dir=Path(args.draw_dir) if args.draw_dir else None, progress=args.progress,
        retries=args.retries, timeout=args.timeout, quiet=args.quiet, max_answer_bytes=_bytes(args.max_answer),
    )
    return batch.run(options, args.paths, stdin=sys.stdin)


def _draw(client: Client, args: argparse.Namespace, image: Path | None, params: dict[str, str],
          response: requests.Response) -> None:
    out = Path(args.draw)
    if response.headers.get("Content-Type", "").startswith("image/"):
        write_image(response.content, out)  # the answer is a picture already (Canny): save it as asked
        return
    body = json_or_none(response)
    if not isinstance(body, dict) or not isinstance(body.get("result"), list):
        raise ClientError(f"{args.endpoint} answers no boxes; there is nothing to draw")
    if image is not None:
        # A recognized face is labelled with its name.
        found = [{**d, "label": d["name"] or "unknown"} if isinstance(d, dict) and "name" in d else d
                 for d in body["result"]]
        skipped = draw_file(image.read_bytes(), found, out, label=args.endpoint.strip("/").split("/")[-1])
        if skipped:
            print(f"note: {skipped} of {len(found)} detections could not be drawn (malformed) and were skipped",
                  file=sys.stderr)
    else:
        # The image lives behind --url: let the server, which fetched it, draw on it.
        params = {"format": "png" if out.suffix.lower() == ".png" else "jpeg", **params}
        out.write_bytes(client.call(args.endpoint, url=args.url, output="image", **params).content)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mysite.client", description=__doc__.split("\n\n")[0])
    p.add_argument("endpoint", help="the API route, e.g. detect, catfacedetection, canny, v1/vision/face")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="image file(s); a folder (walked for images), a glob, or - (paths on stdin) for a batch")
    p.add_argument("--url", help="ask the server to fetch the image from this URL instead (GET ?url=)")
    p.add_argument("--server", default=None,
                   help=f"server base URL (default: $MYSITE_SERVER or {DEFAULT_SERVER})")
    p.add_argument("--draw", metavar="OUT", help="write the image with the results drawn to OUT (.png or .jpg)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                   help="a request parameter, e.g. -p min_neighbors=3 (repeatable)")
    p.add_argument("--retries", type=_retries, default=5,
                   help="retries of a busy server (503), a proxy without its app (502) or a dropped connection (5); "
                        "a server that cannot be reached fails at once")
    p.add_argument("--timeout", type=_seconds, default=60.0, help=TIMEOUT_HELP)
    p.add_argument("--max-answer", type=_positive, default=_MAX_ANSWER_MB, metavar="MB", help=MAX_ANSWER_HELP)
    p.add_argument("--verbose", "-v", action="store_true", help="one image: status and headers on stderr")
    b = p.add_argument_group("batch (several paths, a folder, a glob or -)")
    b.add_argument("--out", "-o", metavar="FILE.jsonl",
                   help="JSON Lines, one object per image (default: stdout); run again to resume")
    b.add_argument("--concurrency", "-c", type=int, metavar="N", help="requests in flight (4)")
    b.add_argument("--per-request", "-k", type=int, metavar="K",
                   help="images packed into one request where the route takes several (1)")
    b.add_argument("--draw-dir", metavar="DIR", help="save each picture with its detections drawn (by the server)")
    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="the progress bar on stderr (default: when stderr is a terminal)")
    b.add_argument("--quiet", "-q", action="store_true", help="no summary at the end")
    return p


def _first_word(argv: Sequence[str]) -> int | None:
    """Where the first word that is not an option (nor an option's value) is in ``argv``: the command."""
    actions = _parser()._actions
    takes_value = {s for a in actions if a.nargs != 0 for s in a.option_strings}
    longs = [s for a in actions for s in a.option_strings if s.startswith("--")]
    i = 0
    while i < len(argv):  # bounded: i grows every turn
        word = argv[i]
        if word == "--":
            return i + 1 if i + 1 < len(argv) else None
        if not word.startswith("-") or word == "-":
            return i
        i += 2 if _value_follows(word, takes_value, longs) else 1
    return None


def _value_follows(word: str, takes_value: set[str], longs: list[str]) -> bool:
    """Whether the option ``word`` takes the next word as its value, as argparse reads it: a long option or
    a unique abbreviation of one (``--serv``), or a cluster of short ones ending in one that takes a value."""
    if word.startswith("--"):
        if "=" in word:
            return False
        named = [o for o in longs if o.startswith(word)]
        return (word if word in longs else named[0] if len(named) == 1 else "") in takes_value
    for k, char in enumerate(word[1:], 1):  # -vp a=b: -v, then -p whose value is the rest or the next word
        if f"-{char}" in takes_value:
            return k == len(word) - 1
    return False


def _draw_problem(out: Path) -> str | None:
    """Why the picture cannot be written to ``out`` (found before the request is sent), or None."""
    try:
        from mysite.client import drawing  # Pillow: needed only to draw
    except ImportError:
        return "drawing needs Pillow (pip install pillow)"
    try:
        drawing.image_format(out)
    except ClientError as exc:
        return str(exc)
    if out.is_dir():
        return "that is a folder; give a file name"
    if not out.parent.is_dir():
        return f"no such folder: {printable(str(out.parent))}"
    return None


def _seconds(text: str) -> float:
    value = _number(text, float)
    if not 0 < value <= MAX_TIMEOUT:  # NaN fails too
        raise argparse.ArgumentTypeError(f"wants seconds above 0 and at most {MAX_TIMEOUT:g}, not {text}")
    return value


def _retries(text: str) -> int:
    value = _number(text, int)
    if not 0 <= value <= MAX_RETRIES:
        raise argparse.ArgumentTypeError(f"wants a whole number from 0 to {MAX_RETRIES}, not {text}")
    return value


def _number(text: str, kind: type[Any]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a {'whole ' if kind is int else ''}number, not {text}") from None


def _positive(text: str) -> float:
    value = _number(text, float)
    if not 0 < value < 2**40:
        raise argparse.ArgumentTypeError(f"wants a positive number, not {text}")
    return value


def _bytes(megabytes: float) -> int:
    return max(1, int(megabytes * 2**20))


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--param wants NAME=VALUE, not {text!r}")
    return name, value


