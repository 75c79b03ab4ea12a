"""The MNIST Flask API's page: draw a digit or choose a picture of one; JavaScript posts it to ``/predict/`` and shows the text."""

from __future__ import annotations

from flask import Blueprint, render_template

from mysite import __version__
from mysite.web.state import current_settings

bp = Blueprint("digit_page", __name__, template_folder="templates")


@bp.get("/mnist")
def mnist() -> str:
    """The MNIST Flask API's page: draw a digit or choose a file; it is posted to /predict/ and the digit shown"""
    return render_template("digit.html", version=__version__,
                           api_key_required=bool(current_settings().api_keys))
