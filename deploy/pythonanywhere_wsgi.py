"""PythonAnywhere WSGI file for mysite.

Paste this into /var/www/<username>_pythonanywhere_com_wsgi.py (the "WSGI
configuration file" link on the Web tab), change PROJECT if you cloned
elsewhere, then press Reload. Settings go in PROJECT/.env (see docs/deploy-pythonanywhere.md).
"""

import os
import sys

PROJECT = os.path.expanduser("~/mysite")  # the folder you cloned the repository into

if PROJECT not in sys.path:
    sys.path.insert(0, PROJECT)

# create_app() reads PROJECT/.env itself; naming it here keeps that true wherever this file lives.
os.environ.setdefault("MYSITE_ENV_FILE", os.path.join(PROJECT, ".env"))

# Importing builds the app and loads the models once per worker, well within the 20 s a reload
# allows. Never call application.run() here: PythonAnywhere serves the app itself.
from wsgi import application  # noqa: E402

__all__ = ["application"]  # what PythonAnywhere's uWSGI looks for
