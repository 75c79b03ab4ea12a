# Sourced by the Elastic Beanstalk platform hooks in .platform/: the staged app's folder, its
# Python, and the environment's MYSITE_* properties (hooks do not get them in their environment).
# shellcheck shell=bash
app_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The platform's virtualenv once requirements are installed (predeploy), else any Python 3.11+.
app_python=""
for candidate in /var/app/venv/*/bin/python "$app_dir/.venv/bin/python" python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    app_python="$candidate"
    break
  fi
done
if [ -x /opt/elasticbeanstalk/bin/get-config ] && [ -n "$app_python" ]; then
  # get-config prints the environment properties as JSON; export the MYSITE_* ones.
  eval "$(/opt/elasticbeanstalk/bin/get-config environment 2>/dev/null | "$app_python" -S -c '
import json, shlex, sys
try:
    props = json.load(sys.stdin)
except ValueError:
    props = {}
for key, value in props.items():
    if key.startswith("MYSITE_") or key in ("PORT", "WEB_CONCURRENCY"):
        print(f"export {key}={shlex.quote(str(value))}")
')"
fi
