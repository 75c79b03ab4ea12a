"""``python -m bench.compose [OUT.jpg]``: write the 12 MP benchmark photo (testkit.compose) and list its
placed faces."""

from __future__ import annotations

import sys
from pathlib import Path

from testkit.compose import HEIGHT, WIDTH, build_jpeg

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "composition_12mp.jpg")
    data, known = build_jpeg()
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, {WIDTH}x{HEIGHT}); {len(known)} known faces:")
    for box in known:
        print(f"  {box}  ({box[2] - box[0]} px)")
