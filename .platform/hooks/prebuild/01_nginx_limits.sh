#!/usr/bin/env bash
# Before Elastic Beanstalk configures nginx: write nginx's body limit, timeouts and JSON error
# pages from the environment's MYSITE_MAX_UPLOAD_MB and MYSITE_TIMEOUT (mysite/server/proxy_conf.py).
# If that fails, the committed file (the defaults) stays, and the deploy goes on.
set -uo pipefail
source "$(dirname "$0")/../../../deploy/eb_hook_env.sh"
cd "$app_dir" || exit 0
if [ -z "$app_python" ]; then
  echo "mysite: no Python 3.11+ found; nginx keeps the default limits" >&2
  exit 0
fi
if "$app_python" -m mysite.server.proxy_conf --out .platform/nginx/conf.d/elasticbeanstalk/mysite.conf; then
  grep -E '^client_max_body_size|^proxy_read_timeout' .platform/nginx/conf.d/elasticbeanstalk/mysite.conf
else
  echo "mysite: could not write nginx limits from the settings; nginx keeps the defaults" >&2
fi
exit 0
