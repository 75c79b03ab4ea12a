"""``python -m mysite.client``: the command (``cli.py``)."""

import sys

from mysite.client.cli import main

sys.exit(main())
