"""``python -m bench.compose [OUT.jpg]``: write the 12 MP benchmark photo (testkit.compose) and list its
placed faces."""

from __future__ import annotations

import argparse
from pathlib import Path

from testkit.compose import HEIGHT, WIDTH, build_jpeg

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.compose", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="composition_12mp.jpg", help="the JPEG to write")
    out = Path(parser.parse_args().out)
    data, known = build_jpeg()
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, {WIDTH}x{HEIGHT}); {len(known)} known faces:")
    for box in known:
        print(f"  {box}  ({box[2] - box[0]} px)")
