#!/usr/bin/env bash
# Before Elastic Beanstalk configures nginx: write nginx's body limit, timeouts and JSON error
# pages from the environment's MYSITE_MAX_UPLOAD_MB and MYSITE_TIMEOUT (mysite/server/proxy_conf.py)
# with the standard library alone (python3 -S): a fresh instance has no virtualenv yet.
# A value that cannot be rendered stops the deploy with one line naming it: nginx must never
# enforce a limit other than the one set. Elastic Beanstalk then keeps the version that runs, and
# nginx the limits in force (named in the line).
set -uo pipefail
source "$(dirname "$0")/../../../deploy/eb_hook_env.sh"
cd "$app_dir" || exit 1
conf=.platform/nginx/conf.d/elasticbeanstalk/mysite.conf
live="${NGINX_LIVE_CONF:-/etc/nginx/conf.d/elasticbeanstalk/mysite.conf}"
if [ -z "$app_python" ]; then
  echo "mysite: deploy stopped: no Python 3.11+ found to write nginx's limits from MYSITE_MAX_UPLOAD_MB and MYSITE_TIMEOUT" >&2
  exit 1
fi
if ! out="$("$app_python" -S -m mysite.server.proxy_conf --out "$conf" --in-force "$live" 2>&1)"; then
  echo "mysite: deploy stopped: ${out##*$'\n'}" >&2  # the last line: the setting, or the error
  exit 1
fi
grep -E '^client_max_body_size|^proxy_read_timeout' "$conf"
