#!/bin/sh
# The Docker image's entrypoint: nginx in front, then the Procfile's command ("$@", the image's CMD).
# nginx takes the public port (PORT, default 8000) and holds each request until it has all of it,
# so a slow or stalled client ties up an nginx connection, not one of gunicorn's worker threads;
# it also answers its own 413/502/504 in the app's JSON. gunicorn listens on loopback (APP_PORT).
set -eu
public="${LISTEN_HOST:-0.0.0.0}:${PORT:-8000}"
app_port="${APP_PORT:-8001}"
prefix="${NGINX_PREFIX:-/tmp/mysite-nginx}"
mkdir -p "$prefix"
python -m mysite.server.proxy_conf --standalone --prefix "$prefix" --listen "$public" \
  --upstream "127.0.0.1:$app_port" --out "$prefix/nginx.conf"
nginx -p "$prefix" -c "$prefix/nginx.conf" -e stderr  # daemonizes; its pid is in $prefix/nginx.pid
export PORT="$app_port"
export GUNICORN_CMD_ARGS="--bind 127.0.0.1:$app_port ${GUNICORN_CMD_ARGS:-}"
exec "$@"
