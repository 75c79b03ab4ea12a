"""Elastic Beanstalk's nginx on loopback, shaped as the Amazon Linux 2023 Python platform writes it.

The platform's ``nginx.conf`` (one server on port 80 including ``conf.d/elasticbeanstalk/*.conf``),
its ``00_application.conf`` (``location /`` to the app on ``PORT``), a static-files location for
each mapping (the Python platform's default ``/static`` -> the bundle's ``static/``, replaced or
added to by ``aws:elasticbeanstalk:environment:proxy:staticfiles``), and the bundle's own
``.platform/nginx/conf.d/elasticbeanstalk/*.conf`` merged in, as a deploy merges them.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests_helpers import nginx_path

from testkit.net import free_port

PROJECT = Path(__file__).resolve().parents[1]
PLATFORM_STATIC = {"/static": "static"}  # the Python platform's default mapping


def static_mapping(staticfiles: Mapping[str, str]) -> dict[str, str]:
    """URL path -> bundle folder: the platform's default with the environment's options over it."""
    return {**PLATFORM_STATIC, **staticfiles}


def nginx_bundle(folder: Path) -> Path:
    """The part of the project's source bundle that configures nginx (``.platform/nginx``), in ``folder``."""
    bundle = folder / "bundle"
    shutil.copytree(PROJECT / ".platform" / "nginx", bundle / ".platform" / "nginx")
    return bundle


@contextmanager
def eb_nginx(bundle: Path, app_port: int, staticfiles: Mapping[str, str], error_log: Path | None = None) -> Iterator[int]:
    """Run it in front of ``127.0.0.1:app_port`` with ``bundle`` as ``/var/app/current``; yield its port.
    ``error_log``: a file for its warnings and errors (else its stderr, shown when it fails to start)."""
    binary = nginx_path()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (apt-get install -y nginx)")
    prefix = Path(tempfile.mkdtemp(prefix="mysite-eb-nginx-"))
    prefix.chmod(0o755)  # workers run as nobody when the master is root
    current = prefix / "current"
    shutil.copytree(bundle, current, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in [current, *current.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    eb_dir = prefix / "conf.d" / "elasticbeanstalk"
    eb_dir.mkdir(parents=True)
    mime = next((p for p in (Path("/etc/nginx/mime.types"),) if p.exists()), None)
    port = free_port()
    (eb_dir / "00_application.conf").write_text(f"""\
location / {{
    proxy_pass          http://127.0.0.1:{app_port};
    proxy_http_version  1.1;
    proxy_set_header    Connection          $connection_upgrade;
    proxy_set_header    Upgrade             $http_upgrade;
    proxy_set_header    Host                $host;
    proxy_set_header    X-Real-IP           $remote_addr;
    proxy_set_header    X-Forwarded-For     $proxy_add_x_forwarded_for;
}}
""")
    (eb_dir / "01_static.conf").write_text("".join(
        f"location {url}/ {{\n    alias {current / folder}/;\n    access_log off;\n}}\n"
        for url, folder in static_mapping(staticfiles).items()))
    for own in sorted((bundle / ".platform" / "nginx" / "conf.d" / "elasticbeanstalk").glob("*.conf")):
        # The bundle's files replace the platform's of the same name (00_application.conf). Its app
        # address is PORT's, 8000 on Elastic Beanstalk: here the test's app port.
        text = own.read_text().replace("http://127.0.0.1:8000;", f"http://127.0.0.1:{app_port};")
        (eb_dir / own.name).write_text(text)
    temp = "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                         "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(f"""\
error_log {error_log or 'stderr'} warn;
pid {prefix / 'nginx.pid'};
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    server_tokens off;
    {f'include {mime};' if mime else ''}
    default_type application/octet-stream;
    access_log off;
{temp}    map $http_upgrade $connection_upgrade {{ default "upgrade"; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        client_header_timeout 60;
        client_body_timeout 60;
        keepalive_timeout 60;
        include {eb_dir}/*.conf;
    }}
}}
""")
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("nginx did not listen within 10 s") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)
