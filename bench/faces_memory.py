"""``python -m bench.faces_memory``: the instance's memory and the group photo's time with faces loaded.

Starts the Procfile's gunicorn at its defaults (two web workers, the CV pool: one CV process per
CPU) twice, without and with dlib's face model (the shared folder's files beside the checkout),
and prints for each: the whole instance's PSS idle (every process; a page shared by n processes
counts 1/n in each), and each CV process's private and shared memory (``smaps_rollup``: the
model's pages still shared with the master are in *shared*). With the model: one person is
registered, the 17-face group photo is recognized over HTTP five times (wall time, and the
CPU time the whole instance spent, from ``/proc/PID/stat``, and the time its threads waited
for a CPU held by other work, from ``schedstat``: wall minus that wait is what the request's
own path took), then two clients send a 40 MP photo
to ``/recognize`` three times each at once, then a 12 MP one, then the serving core's costliest
accepted request (``bench.encodings``: a progressive 40 MP JPEG to ``/detect``), sampling the
instance's PSS.
The machine may be shared: read the CPU time beside the wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.encodings import encodings
from bench.memory import peak_pss_while, photos, pss_mb
from bench.server import ROOT, Server, multipart, request

MODEL = ROOT.parent / "shared" / "models" / "dlib-face" / "dlib_face_recognition_resnet_model_v1.dat"
GROUP = ROOT / "tests" / "data" / "group_17_faces.jpg"
ASTRONAUT = ROOT / "tests" / "data" / "astronaut.png"
TICKS = os.sysconf("SC_CLK_TCK")


def rollup(pid: int) -> dict[str, float]:
    """MB by kind from /proc/PID/smaps_rollup: Rss, Pss, Shared_* and Private_* summed."""
    out = {"rss": 0.0, "pss": 0.0, "shared": 0.0, "private": 0.0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        kb = int(rest.split()[0])
        if key == "Rss":
            out["rss"] += kb / 1024
        elif key == "Pss":
            out["pss"] += kb / 1024
        elif key.startswith("Shared_"):
            out["shared"] += kb / 1024
        elif key.startswith("Private_"):
            out["private"] += kb / 1024
    return out


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of the processes and of their children that have ended: a CV process the pool
    replaces counts on in its dispatcher's figure, not out of the sum."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / TICKS  # utime, stime, cutime, cstime
    return total


def cpu_waits(pids: list[int]) -> dict[int, float]:
    """Seconds each process's threads spent runnable but waiting for a CPU (/proc/PID/task/TID/schedstat)."""
    waits = {}
    for pid in pids:
        total = 0
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
        waits[pid] = total / 1e9
    return waits


def waited(before: dict[int, float], after: dict[int, float]) -> float:
    """The wait between two readings, over the processes of the second: one that ended in between
    takes its figure with it (not counted), one that started counts whole."""
    return sum(w - before.get(pid, 0.0) for pid, w in after.items())


def instance(server: Server) -> list[int]:
    assert server.proc is not None
    return [server.proc.pid, *server.worker_pids()]


def idle(server: Server, label: str) -> float:
    time.sleep(2)
    pids = instance(server)
    whole = sum(pss_mb(p) for p in pids)
    master = rollup(pids[0])
    print(f"\n{label}: whole instance idle {whole:.0f} MB PSS ({len(pids)} processes); "
          f"master RSS {master['rss']:.0f} MB")
    cv = server.cv_pids()
    others = [p for p in pids if p not in cv]
    print("  master, web workers, dispatcher: PSS " + ", ".join(f"{rollup(p)['pss']:.0f}" for p in others) + " MB")
    for pid in cv:
        r = rollup(pid)
        print(f"  CV process {pid}: RSS {r['rss']:.0f} MB = shared {r['shared']:.0f} + private {r['private']:.0f}; "
              f"PSS {r['pss']:.0f} MB")
    return whole


def two_at_once(server: Server, photo: bytes, name: str, path: str) -> None:
    """Two clients send ``photo`` to ``path`` three times each at once; the instance's peak PSS."""
    body, ctype = multipart(photo)
    statuses: list[int] = []
    said: set[bytes] = set()

    def client() -> None:
        for _ in range(3):
            status, answer = request(server.port, "POST", path, body, ctype, timeout=120)
            statuses.append(status)
            if status != 200:
                said.add(answer[:200])

    started = time.perf_counter()
    peak = peak_pss_while(server, [client, client])
    print(f"two clients, the {name} photo ({len(photo) / 1e6:.1f} MB) to {path} three times each at once: "
          f"whole instance peak {peak:.0f} MB PSS (goal <= 512); statuses {statuses}; "
          f"{time.perf_counter() - started:.1f} s")
    for answer in said:
        print(f"  {answer!r}")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.faces_memory", description=__doc__.splitlines()[0])
    ap.add_argument("--work-deadline", type=float, help="MYSITE_WORK_DEADLINE for the run (on a busy machine "
                    "the default 10 s stops work that needs 2 s of CPU)")
    args = ap.parse_args()
    deadline = {"MYSITE_WORK_DEADLINE": str(args.work_deadline)} if args.work_deadline else {}
    print(f"mysite bench.faces_memory: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} (the machine may be shared)")
    with Server(workers=2, cv_threads=-1, extra_env=deadline) as server:
        without = idle(server, "without the face model")
    db = Path(tempfile.mkdtemp()) / "faces.sqlite3"
    env = {"MYSITE_FACEID_MODEL": str(MODEL), "MYSITE_FACES_DB": f"sqlite:///{db}", **deadline}
    with Server(workers=2, cv_threads=-1, extra_env=env) as server:
        with_faces = idle(server, "with the face model")
        print(f"  the face model adds {with_faces - without:.0f} MB PSS to the instance")
        costliest = next(build for name, _, build in encodings() if name == "progressive JPEG")()
        two_at_once(server, costliest, "40 MP progressive JPEG (fresh instance)", "/detect")
        body, ctype = multipart(ASTRONAUT.read_bytes())
        status = request(server.port, "POST", "/faces/Eileen%20Collins", body, ctype, timeout=60)[0]
        assert status == 200, status
        body, ctype = multipart(GROUP.read_bytes())
        walls, cpus, codes, waits = [], [], [], []
        for _ in range(5):
            pids = instance(server)
            c0, q0, w0 = cpu_seconds(pids), cpu_waits(server.cv_pids()), time.perf_counter()
            status, answer = request(server.port, "POST", "/recognize", body, ctype, timeout=60)
            walls.append(time.perf_counter() - w0)
            cpus.append(cpu_seconds(instance(server)) - c0)  # the processes now: a replaced one's successor too
            waits.append(waited(q0, cpu_waits(server.cv_pids())))
            codes.append(status)
            if status != 200:
                print(f"  {status}: {answer[:160]!r}")
        print(f"\nrecognize of the group photo (17 faces) over HTTP, 5 times: statuses {codes}; wall median "
              f"{statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f}); instance CPU median "
              f"{statistics.median(cpus):.2f} s (min {min(cpus):.2f}); load {os.getloadavg()[0]:.1f}")
        free = [w - q for w, q in zip(walls, waits)]
        print(f"  the CV processes waited for a CPU {statistics.median(waits):.2f} s (median); wall minus that "
              f"wait: median {statistics.median(free):.2f} s, max {max(free):.2f} s")
        pics = photos()
        for name in ("40mp", "12mp"):
            two_at_once(server, pics[name](), name, "/recognize")
        two_at_once(server, costliest, "40 MP progressive JPEG (after the face work)", "/detect")
        idle(server, "with the face model, after")


if __name__ == "__main__":
    main()
