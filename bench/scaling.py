"""``python -m bench.scaling``: doubling each hostile input of every parser on a request's path (testkit/scaling.py).

    python -m bench.scaling            # every case, a markdown table
    python -m bench.scaling --case jpeg-com-flood
"""

from __future__ import annotations

import sys

from testkit.scaling import main

if __name__ == "__main__":
    sys.exit(main())
