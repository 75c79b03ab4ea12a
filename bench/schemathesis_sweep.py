"""``python -m bench.schemathesis_sweep 1-10``: tests/test_schemathesis.py's run, seed after seed.

CI runs schemathesis with one fixed seed, so its cases are the same every time; this runs the same
bounded run (every check, every operation, the same server) with other seeds, to find what the fixed
seed does not reach. Prints one line per seed and every failure found; exits 1 if any seed failed.
The argument: which seed values, a range or a comma list (default 1-10).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def seed_values(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(s) for s in text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every process under it (reaped ones included), from /proc."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stats[int(entry.name)][1])
    family, todo = set(), [root]
    while todo:
        pid = todo.pop()
        family.add(pid)
        todo += [p for p, parent in parents.items() if parent == pid and p not in family]
    ticks = sum(sum(int(v) for v in stats[p][11:15]) for p in family if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", type=seed_values, default=seed_values("1-10"))
    args = parser.parse_args(argv)
    try:  # the test's own server and run, as CI has them: in tests/, which the child's path holds
        import test_schemathesis as run
    except ImportError:
        path = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
        return subprocess.call([sys.executable, "-m", "bench.schemathesis_sweep", *(argv or sys.argv[1:])],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": path})
    failed = 0
    with tempfile.TemporaryDirectory() as tmp, run.serve(Path(tmp)) as server:
        url = server.url
        print("| seed | cases | failures | wall s | schemathesis CPU s | server CPU s |\n|---|---|---|---|---|---|")
        for seed in args.which:
            started, cpu, served = time.perf_counter(), os.times(), _tree_cpu(server.pid)
            code, out = run.schemathesis(url, seed, Path(tmp))
            spent = os.times()
            cases = re.search(r"(\d+) generated", out)
            found = re.search(r"(\d+) unique failures?|(\d+) errors?", out)
            print(f"| {seed} | {cases.group(1) if cases else '?'} | {found.group(0) if found else 0 if code == 0 else '?'} "
                  f"| {time.perf_counter() - started:.0f} "
                  f"| {spent.children_user + spent.children_system - cpu.children_user - cpu.children_system:.0f} "
                  f"| {_tree_cpu(server.pid) - served:.0f} |",
                  flush=True)
            if code:
                failed += 1
                start = out.find("=== FAILURES")
                print(f"seed {seed}:\n" + (out[start:] if start >= 0 else out)[-8000:], file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
