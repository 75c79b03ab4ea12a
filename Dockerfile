# syntax=docker/dockerfile:1
# mysite as one container: nginx (buffers slow clients, JSON errors) in front of the Procfile's
# gunicorn, as a non-root user. Build:  docker build -t mysite .
# With the optional models fetched at build time (verified by digest; the build fails if one
# cannot be had):  docker build --build-arg MODELS="ssd classifier blazeface_full" -t mysite .
# Run:  docker run -p 8000:8000 mysite   (settings: -e MYSITE_...; docs/deploy-docker.md)
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MYSITE_MODEL_DIR=/app/models \
    PORT=8000 \
    MYSITE_GRACEFUL_TIMEOUT=8
# A stopping gunicorn lets requests in flight finish for MYSITE_GRACEFUL_TIMEOUT seconds, within
# docker stop's 10 s grace (then SIGKILL). To let them run longer raise both together:
#   docker run --stop-timeout 30 -e MYSITE_GRACEFUL_TIMEOUT=25 ...

# Debian's nginx (1.3 MB installed), the same package the rehearsal (python -m bench.deploy) runs.
# Not pinned to a version (hadolint DL3008): Debian's archive keeps only the newest build of a
# release's package (security fixes replace it), so a pinned version soon stops building; the
# base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The project's own runtime requirements, nothing else (a layer that survives code changes).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY Procfile wsgi.py ./
COPY mysite/ mysite/
COPY deploy/docker-entrypoint.sh deploy/

ARG MODELS=""
RUN mkdir -p /app/models \
    && if [ -n "$MODELS" ]; then python -m mysite.models fetch --dir /app/models $MODELS; fi \
    && python -m compileall -q mysite wsgi.py \
    && useradd --system --no-create-home --uid 10001 mysite

# By number (hadolint DL3066): a name the host does not know cannot be checked against it.
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=4)"]
ENTRYPOINT ["deploy/docker-entrypoint.sh"]
# The Procfile's command, word for word (tests/test_deploy.py checks).
CMD ["gunicorn", "--config", "python:mysite.server.gunicorn_conf", "wsgi:application"]
