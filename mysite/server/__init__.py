"""The server runtime around the app: gunicorn's settings, admission, deadlines, logs, memory, the proxy's config."""
