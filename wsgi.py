"""WSGI entry point: ``application`` for gunicorn, Elastic Beanstalk and PythonAnywhere.

``python wsgi.py`` runs Flask's development server on 0.0.0.0:5000 for local use.
"""

import sys

from mysite import create_app
from mysite.settings import SettingsError

try:
    application = create_app()
except SettingsError as exc:
    # One clear line instead of a traceback: the host's log shows exactly what to fix.
    sys.exit(f"mysite: invalid setting: {exc}")

if __name__ == "__main__":
    application.run(host="0.0.0.0", port=5000)
