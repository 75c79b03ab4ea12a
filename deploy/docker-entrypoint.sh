#!/usr/bin/env bash
# The Docker image's entrypoint: nginx in front, then the Procfile's command ("$@", the image's CMD).
# nginx takes the public port (PORT, default 8000) and holds each request until it has all of it,
# so a slow or stalled client ties up an nginx connection, not one of gunicorn's worker threads;
# it also answers its own 413/502/504 in the app's JSON. gunicorn listens on loopback (APP_PORT).
# Both run as children of this script, which stays PID 1: a stop (SIGTERM, SIGINT) goes to both
# (nginx stops accepting and hands over what it has, then gunicorn finishes its requests within
# MYSITE_GRACEFUL_TIMEOUT); 1 + MYSITE_GRACEFUL_TIMEOUT s after it began, whatever still runs is
# stopped (the image's 8 s: all is gone within docker stop's 10 s grace); SIGHUP reloads gunicorn;
# if either dies the other is stopped and the container exits, so its restart policy starts both again.
set -euo pipefail
public="${LISTEN_HOST:-0.0.0.0}:${PORT:-8000}"
app_port="${APP_PORT:-8001}"
prefix="${NGINX_PREFIX:-/tmp/mysite-nginx}"
mkdir -p "$prefix"
graceful_ms=$((1000 * $(python -c 'from mysite.server import timeouts; print(timeouts.graceful_timeout())')))
python -m mysite.server.proxy_conf --standalone --prefix "$prefix" --listen "$public" \
  --upstream "127.0.0.1:$app_port" --out "$prefix/nginx.conf"
nginx -p "$prefix" -c "$prefix/nginx.conf" -e stderr -g 'daemon off;' &
nginx_pid=$!
export PORT="$app_port"
export GUNICORN_CMD_ARGS="--bind 127.0.0.1:$app_port ${GUNICORN_CMD_ARGS:-}"
"$@" &
app_pid=$!

now_ms() {
  local us="${EPOCHREALTIME//[!0-9]/}"
  echo $((us / 1000))
}

# Waits until process $1 is gone or the clock passes $2 (ms); fails if it is still there.
gone_by() {
  while kill -0 "$1" 2>/dev/null && (($(now_ms) < $2)); do sleep 0.1; done
  ! kill -0 "$1" 2>/dev/null
}

stop_by=""
stop() {
  [[ -z "$stop_by" ]] || return 0
  stop_by=$(($(now_ms) + 1000 + graceful_ms))
  # nginx first: it closes its port and finishes what it took in. A body still arriving reaches
  # gunicorn only once whole, so gunicorn keeps listening until nginx is gone, or 1 s, then
  # finishes its requests and exits.
  kill -QUIT "$nginx_pid" 2>/dev/null || true
  gone_by "$nginx_pid" $(($(now_ms) + 1000)) || true
  kill -TERM "$app_pid" 2>/dev/null || true
}
trap stop TERM INT
trap 'kill -HUP "$app_pid" 2>/dev/null || true' HUP
# Until one of the two exits (a trapped signal also ends a wait: then wait again), or a stop's end.
while kill -0 "$app_pid" 2>/dev/null && kill -0 "$nginx_pid" 2>/dev/null; do
  if [[ -z "$stop_by" ]]; then
    wait -n "$app_pid" "$nginx_pid" || true
  elif (($(now_ms) < stop_by)); then
    sleep 0.1
  else
    break
  fi
done
stop
# gunicorn past its graceful timeout is stopping its process pool, or still held by a reload
# (SIGHUP) that waits for the old workers: killed, its workers and pool follow it.
gone_by "$app_pid" "$stop_by" || kill -KILL "$app_pid" 2>/dev/null || true
status=0
wait "$app_pid" || status=$?
# nginx has nothing left to pass on once gunicorn is gone: it finishes sending answers for 5 s at
# most, and not past the stop's end; then it stops fast, which may take it a second, so it is
# killed at half of one.
nginx_by=$(($(now_ms) + 5000))
gone_by "$nginx_pid" $((nginx_by < stop_by ? nginx_by : stop_by)) || {
  kill -TERM "$nginx_pid" 2>/dev/null || true
  gone_by "$nginx_pid" $(($(now_ms) + 500)) || kill -KILL "$nginx_pid" 2>/dev/null || true
}
wait "$nginx_pid" 2>/dev/null || true
exit "$status"
