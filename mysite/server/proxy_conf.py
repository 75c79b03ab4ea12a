"""``python -m mysite.server.proxy_conf``: the nginx settings in front of the app, derived from its settings.

One source of truth for the body limit: nginx lets through exactly the largest body the app
accepts (``Settings.max_body_bytes``, from ``MYSITE_MAX_UPLOAD_MB``) and waits as long as
gunicorn lets a request run (``MYSITE_TIMEOUT``). What nginx itself refuses or cannot reach
(400 malformed, 413 body too large, 414 URL too long, 431 headers too large, 502/504 while the
app restarts) is answered in the app's JSON shape, never nginx's HTML page. (A client too slow
with its headers or body gets no answer at all: nginx closes the connection, sending no 408.)

The output is server-level configuration: Elastic Beanstalk includes it from
``.platform/nginx/conf.d/elasticbeanstalk/`` inside its server block. The file committed there
is this module's output for the default settings (a test keeps them equal); the prebuild hook
``.platform/hooks/prebuild/01_nginx_limits.sh`` writes it again from the environment's settings.
Standard library only (the hook runs it with ``python3 -S``, before the app's requirements are
installed): a setting it cannot render stops the deploy with one line naming it and the limits
still in force, rather than serving a limit other than the one set.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from mysite import settings as settings_mod
from mysite.errors import Reason
from mysite.server import cpus, timeouts

CONF_PATH = Path(".platform/nginx/conf.d/elasticbeanstalk/mysite.conf")
# nginx lets an idle connection to gunicorn go after this, before gunicorn would close it (its
# keep-alive, 2 s by default): a request nginx sends on a connection gunicorn is closing at that
# moment is lost (nginx's 502; a POST is never sent again).
UPSTREAM_IDLE_S = 1
# Connections one address may have in requests at once through the standalone nginx: far more than a crowd
# behind one NAT keeps busy, far fewer than its connections together, so one address cannot hold them all.
PER_ADDRESS = 128
WORKER_CONNECTIONS = 4096


def _json_body(status: str, message: str, reason: Reason) -> str:
    """The app's error shape, quoted for an nginx ``return`` (no single quotes inside)."""
    return json.dumps({"status": status, "message": message, "reason": reason.value}).replace("'", "\u2019")


def _error_location(where: str, code: int, body: str, extra: str = "") -> str:
    """An nginx location answering ``code`` with the JSON ``body`` (nosniff, as every answer of the app)."""
    return (f"location {where} {{\n    default_type application/json;\n"
            f"    add_header X-Content-Type-Options nosniff always;\n{extra}    return {code} '{body}';\n}}\n")


def render(settings: settings_mod.Settings, timeout_s: int) -> str:
    """The nginx server-block configuration for these settings."""
    limit_kib = -(-settings.max_body_bytes // 1024)  # rounded up: never below what the app accepts
    locations = "".join([
        _error_location("@mysite_413", 413, _json_body(
            "too large", f"the request body is larger than the upload limit of {settings.max_upload_mb:g} MB",
            Reason.TOO_LARGE)),
        _error_location("@mysite_502", 502, _json_body(
            "unavailable", "the service is restarting or overloaded; try again in a few seconds", Reason.UNAVAILABLE),
            extra="    add_header Retry-After 5 always;\n"),
        _error_location("@mysite_504", 504, _json_body(
            "timeout", f"the service did not answer within {timeout_s} s", Reason.TIMEOUT)),
        _error_location("= /.mysite-error/400", 400, _json_body(
            "bad request", "the request is not valid HTTP", Reason.BAD_REQUEST)),
        _error_location("= /.mysite-error/414", 414, _json_body(
            "request-uri too large", "the request line (method and URL) is too long", Reason.TOO_LARGE)),
        _error_location("= /.mysite-error/431", 431, _json_body(
            "request header fields too large", "a request header, or all of them together, is too large",
            Reason.TOO_LARGE)),
    ])
    return f"""\
# Written by `python -m mysite.server.proxy_conf` from MYSITE_MAX_UPLOAD_MB={settings.max_upload_mb:g} and
# MYSITE_TIMEOUT={timeout_s}: do not edit by hand (docs/deploy-elastic-beanstalk.md).

# The largest body the app accepts: the image limit as base64 (4/3) plus room for the form.
# Larger bodies get the JSON 413 below instead of nginx's HTML page.
client_max_body_size {limit_kib}k;

# Wait as long as gunicorn lets a request run before answering 504.
proxy_read_timeout {timeout_s}s;
proxy_send_timeout {timeout_s}s;

# nginx's own errors in the app's JSON shape. Only errors nginx makes itself are replaced
# (proxy_intercept_errors stays off): the app's own 413 and 503 answers pass through as they are.
# nosniff as on every answer of the app (mysite/web/security.py).
error_page 413 @mysite_413;
error_page 502 503 @mysite_502;
error_page 504 @mysite_504;
# Errors found while nginx reads the request line and headers: a named location needs a parsed
# URL (with none, nginx answers its own 500 page), so these go to URLs. 494 is nginx's name for
# headers too large; it is answered as 431, as gunicorn answers it when nginx is not in front.
error_page 400 /.mysite-error/400;
error_page 414 /.mysite-error/414;
error_page 494 =431 /.mysite-error/431;
{locations}"""


def standalone(settings: settings_mod.Settings, timeout_s: int, prefix: Path, listen: str,
               upstreams: list[str], retry_other: bool = False, workers: int | None = None,
               upstream_idle_s: int = UPSTREAM_IDLE_S, per_address: int = PER_ADDRESS) -> str:
    """A whole nginx.conf: ``listen`` in front of ``upstreams`` with :func:`render`'s settings.

    The Docker image runs it in front of gunicorn, where it buffers whole requests and answers
    before a worker sees them (a slow client holds an nginx connection, not a worker's thread);
    ``python -m bench.deploy`` runs it as the load balancer's stand-in, shaped like an ALB: a
    request is never sent again to another instance unless ``retry_other``. ``workers``: nginx's
    worker processes, by default the CPUs this process may use (a cgroup quota included, which
    ``worker_processes auto`` does not see). ``upstream_idle_s``: how long an idle connection to an
    upstream is kept for reuse, shorter than the upstream keeps it (the rehearsal's balancer keeps its
    connections as long as the ALB does). ``per_address``: requests one client address may have in
    nginx at once (each holds a connection); past it, a JSON 429. Runs as any user: every path is under
    ``prefix``.
    """
    # max_fails=0: nginx never takes a server out by itself (a load balancer's health check does, as
    # an ALB's targets leave by its checks alone); otherwise, with one server down for a deploy, a
    # single reset from the other left nginx with no server at all for fail_timeout, answering 502.
    servers = "\n".join(f"        server {u} max_fails=0;" for u in upstreams)
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))
    server_conf = "\n".join(f"        {line}" if line else "" for line in (render(settings, timeout_s) + _per_address(
        per_address)).splitlines())
    return f"""\
# Written by `python -m mysite.server.proxy_conf --standalone`.
worker_processes {workers or cpus.available()};
# Each request through nginx holds two connections (the client's, the upstream's) and may hold a file.
worker_rlimit_nofile {4 * WORKER_CONNECTIONS};
pid {prefix / 'nginx.pid'};
error_log stderr warn;
events {{ worker_connections {WORKER_CONNECTIONS}; }}
http {{
    access_log off;
    server_tokens off;
    limit_conn_zone $binary_remote_addr zone=mysite_address:10m;
{temp}
    upstream mysite {{
{servers}
        keepalive 16;
        keepalive_timeout {upstream_idle_s}s;
    }}
    server {{
        listen {listen};
        # A client gets 60 s to send its headers and 60 s between two reads of its body; nginx
        # holds the whole body before the app sees it (proxy_request_buffering, on by default).
        client_header_timeout 60s;
        client_body_timeout 60s;
        send_timeout 60s;
        keepalive_timeout 60s;
{server_conf}
        location / {{
            proxy_pass http://mysite;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
{_retry(retry_other)}        }}
    }}
}}
"""


def _per_address(most: int) -> str:
    """One address's requests at once: a client that holds connections open (headers sent, a body
    dripping) would otherwise hold every connection nginx has, and every other client is refused."""
    body = _json_body("too many requests", f"this address has {most} requests in progress already; retry when "
                      "one is answered", Reason.BUSY)
    return (f"\n# At most {most} requests at once from one address (nginx's limit_conn); past it a JSON 429.\n"
            f"limit_conn mysite_address {most};\nlimit_conn_status 429;\nerror_page 429 @mysite_429;\n"
            + _error_location("@mysite_429", 429, body, extra="    add_header Retry-After 1 always;\n"))


def _retry(retry_other: bool) -> str:
    if not retry_other:
        return "            proxy_next_upstream off;\n"
    # Every endpoint is a pure function of its request (no state, no side effects), so a request an
    # instance dropped as it died may safely go to another one.
    return ("            proxy_next_upstream error timeout non_idempotent;\n"
            "            proxy_next_upstream_tries 2;\n")


def in_force(path: Path) -> str:
    """What a written configuration enforces, in a few words (for the message of a deploy that stops)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return f"no nginx limits written yet at {path}"
    made = re.search(r"from (MYSITE_MAX_UPLOAD_MB=\S+) and\s*#?\s*(MYSITE_TIMEOUT=\d+)", text)
    body = re.search(r"^client_max_body_size (\S+);", text, re.M)
    if not body:
        return f"{path} sets no client_max_body_size"
    return f"client_max_body_size {body.group(1)}" + (f" ({made.group(1)}, {made.group(2)})" if made else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mysite.server.proxy_conf", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write here (default: print)")
    ap.add_argument("--standalone", action="store_true", help="a whole nginx.conf, not the server-level part")
    ap.add_argument("--prefix", type=Path, default=Path("/tmp/mysite-nginx"), help="nginx's folder (--standalone)")
    ap.add_argument("--listen", default="0.0.0.0:8000", help="nginx's address (--standalone)")
    ap.add_argument("--upstream", action="append", help="an app address, host:port (--standalone; repeatable)")
    ap.add_argument("--retry-other", action="store_true",
                    help="send a request an instance dropped to another one (--standalone; an ALB does not)")
    ap.add_argument("--in-force", type=Path,
                    help="the configuration nginx runs now: named in the message if these settings cannot be rendered")
    args = ap.parse_args(argv)
    try:
        settings = settings_mod.load()
        timeout = timeouts.request_timeout()
        if args.standalone:
            text = standalone(settings, timeout, args.prefix, args.listen, args.upstream or ["127.0.0.1:8001"],
                              retry_other=args.retry_other)
        else:
            text = render(settings, timeout)
    except ValueError as exc:  # SettingsError, or MYSITE_TIMEOUT that is not a number
        kept = f"; nginx keeps what is in force: {in_force(args.in_force)}" if args.in_force else ""
        print(f"invalid setting: {exc}{kept}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
