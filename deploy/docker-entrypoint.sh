#!/usr/bin/env bash
# The Docker image's entrypoint: nginx in front, then the Procfile's command ("$@", the image's CMD).
# nginx takes the public port (PORT, default 8000) and holds each request until it has all of it,
# so a slow or stalled client ties up an nginx connection, not one of gunicorn's worker threads;
# it also answers its own 413/502/504 in the app's JSON. gunicorn listens on loopback (APP_PORT).
# Both run as children of this script, which stays PID 1: a stop (SIGTERM, SIGINT) goes to both
# (nginx stops accepting and hands over what it has, then gunicorn finishes its requests within
# MYSITE_GRACEFUL_TIMEOUT; both within docker stop's grace); SIGHUP reloads gunicorn; if either dies the other is stopped and the
# container exits, so its restart policy starts both again.
set -euo pipefail
public="${LISTEN_HOST:-0.0.0.0}:${PORT:-8000}"
app_port="${APP_PORT:-8001}"
prefix="${NGINX_PREFIX:-/tmp/mysite-nginx}"
mkdir -p "$prefix"
python -m mysite.server.proxy_conf --standalone --prefix "$prefix" --listen "$public" \
  --upstream "127.0.0.1:$app_port" --out "$prefix/nginx.conf"
nginx -p "$prefix" -c "$prefix/nginx.conf" -e stderr -g 'daemon off;' &
nginx_pid=$!
export PORT="$app_port"
export GUNICORN_CMD_ARGS="--bind 127.0.0.1:$app_port ${GUNICORN_CMD_ARGS:-}"
"$@" &
app_pid=$!

stop() {
  # nginx first: it closes its port and finishes what it took in. A body still arriving reaches
  # gunicorn only once whole, so gunicorn keeps listening until nginx is gone, or 1 s (1 s plus
  # MYSITE_GRACEFUL_TIMEOUT=8 is within docker stop's 10 s), then finishes its requests and exits.
  kill -QUIT "$nginx_pid" 2>/dev/null || true
  for _ in $(seq 10); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$app_pid" 2>/dev/null || true
}
trap stop TERM INT
trap 'kill -HUP "$app_pid" 2>/dev/null || true' HUP
# Until one of the two exits (a trapped signal also ends a wait: then wait again).
while kill -0 "$app_pid" 2>/dev/null && kill -0 "$nginx_pid" 2>/dev/null; do
  wait -n "$app_pid" "$nginx_pid" || true
done
stop
status=0
wait "$app_pid" || status=$?
# nginx has nothing left to answer once gunicorn is gone: a bounded wait, then a fast stop.
for _ in $(seq 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
kill -TERM "$nginx_pid" 2>/dev/null || true
wait "$nginx_pid" 2>/dev/null || true
exit "$status"
