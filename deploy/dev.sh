#!/usr/bin/env bash
# Local set-up in one command:
#   deploy/dev.sh serve   create .venv, install requirements.txt, serve on http://localhost:5000
#   deploy/dev.sh test    create .venv, install requirements-dev.txt, run the test suite
# Extra arguments go to gunicorn (serve) or pytest (test). PYTHON picks the interpreter (>= 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-}"; shift || true
case "$what" in
  serve) reqs=requirements.txt ;;
  test) reqs=requirements-dev.txt ;;
  *) echo "usage: deploy/dev.sh serve|test [args...]" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "mysite needs Python 3.11 or newer; set PYTHON=python3.12 (or similar)" >&2; exit 1; }

# Reinstall only when the requirements changed since the last install.
stamp=".venv/.installed-$(cat requirements.txt "$reqs" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$reqs"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ "$what" = serve ]; then
  # The Procfile's own command, on port 5000 where the book's clients look.
  export PORT="${PORT:-5000}"
  exec .venv/bin/gunicorn --config python:mysite.gunicorn_conf "$@" wsgi:application
fi
exec .venv/bin/python -m pytest -q "$@"
