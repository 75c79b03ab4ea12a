#!/usr/bin/env bash
# Local set-up in one command:
#   deploy/dev.sh serve   create .venv, install requirements.txt and the project, serve on http://127.0.0.1:5000
#                         (HOST=0.0.0.0 to be reachable from other machines, PORT for another port)
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

# One stamp per requirements file, named after its content: pip runs only when that file changed
# since it was last installed, so switching between serve and test installs nothing.
# requirements-dev.txt includes requirements.txt: installing it satisfies both stamps.
stamp() { echo ".venv/.installed-$1-$(cat requirements.txt "$1" | sha256sum | cut -c1-16)"; }
if [ ! -x .venv/bin/python ] || [ ! -f "$(stamp "$reqs")" ]; then
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$reqs"
  done_files="$reqs"
  [ "$reqs" = requirements.txt ] || done_files="$reqs requirements.txt"
  rm -f .venv/.installed-[0-9a-f]*  # the older one-stamp-for-everything format
  for f in $done_files; do
    rm -f ".venv/.installed-$f-"*
    touch "$(stamp "$f")"
  done
fi

# The project itself, editable: `python -m mysite.client` and the mysite-client command work from any folder.
[ -x .venv/bin/mysite-client ] || .venv/bin/python -m pip install --quiet --no-deps -e .

if [ "$what" = serve ]; then
  # The Procfile's own command, on port 5000 where the book's clients look, on loopback only
  # unless HOST says otherwise.
  export PORT="${PORT:-5000}"
  exec .venv/bin/gunicorn --config python:mysite.server.gunicorn_conf --bind "${HOST:-127.0.0.1}:$PORT" "$@" \
    wsgi:application
fi
exec .venv/bin/python -m pytest -q "$@"
