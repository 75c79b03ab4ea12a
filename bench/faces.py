"""Face recognition quality and search speed: ``python -m bench.faces PHOTOS [--faces-model FILE]``.

Quality: photos of five people from the face_recognition project's examples and tests
(github.com/ageitgey/face_recognition, folders examples/ and tests/test_images/; PHOTOS is a
checkout of it), none of them used to tune anything. One photo per person is registered;
every other photo of them must be named right, and strangers (a sixth person, a child in
one photo, the astronaut and the 17 small faces of the group photo in tests/data) must stay
unknown. Prints the distance of every probe face to its nearest registered person, a
histogram of same-person and other-person distances, and the counts at every client's default
threshold (min_confidence 0.45, 0.67, 0.7).

Speed: the model on the 17-face group photo (CPU time, and the process's memory before and
after loading it and after the run), and recognize's search among 10,000 registered faces
(random vectors in SQLite), CPU time per query of 1 and of 17 faces, beyond the embedding.
The quality part needs PHOTOS; ``--speed-only`` runs the rest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mysite.faces.index import MIN_NAMED_WIDTH, FaceIndex, confidence
from mysite.faces.store import FaceStore
from mysite.models.registry import Registry
from mysite.models.schema import read_specs
from mysite.settings import load

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "dlib-face" / \
    "dlib_face_recognition_resnet_model_v1.dat"

# Registered: one photo each (path in the checkout).
GALLERY = {
    "Barack Obama": "examples/obama.jpg",
    "Joe Biden": "examples/biden.jpg",
    "Alex Lacamoire": "examples/knn_examples/train/alex_lacamoire/img1.jpg",
    "Kit Harington": "examples/knn_examples/train/kit_harington/john1.jpeg",
    "Rose Leslie": "examples/knn_examples/train/rose_leslie/img1.jpg",
}
# Probes: photo -> who each face is, left to right by the box's centre (None: a stranger).
PROBES: dict[str, list[str | None]] = {
    "examples/knn_examples/train/obama/obama2.jpg": ["Barack Obama"],
    "examples/knn_examples/test/obama1.jpg": ["Barack Obama"],
    "tests/test_images/obama3.jpg": ["Barack Obama"],
    "examples/obama_small.jpg": ["Barack Obama"],
    "tests/test_images/obama_partial_face.jpg": ["Barack Obama"],
    "tests/test_images/obama_partial_face2.jpg": ["Barack Obama"],
    "examples/knn_examples/train/biden/biden2.jpg": ["Joe Biden"],
    "examples/two_people.jpg": ["Barack Obama", "Joe Biden"],
    "examples/knn_examples/test/obama_and_biden.jpg": ["Joe Biden", "Barack Obama", None],
    "examples/alex-lacamoire.png": ["Alex Lacamoire"],
    "examples/knn_examples/test/alex_lacamoire1.jpg": ["Alex Lacamoire"],
    "examples/knn_examples/train/kit_harington/john2.jpeg": ["Kit Harington"],
    "examples/knn_examples/test/johnsnow_test1.jpg": ["Kit Harington"],
    "examples/knn_examples/train/rose_leslie/img2.jpg": ["Rose Leslie"],
    "examples/knn_examples/test/kit_with_rose.jpg": ["Rose Leslie", "Kit Harington"],
    "examples/lin-manuel-miranda.png": [None],
}
STRANGERS_HERE = {"astronaut.png": 1, "group_17_faces.jpg": 17}  # tests/data: nobody registered


def faces_of(model, image: np.ndarray) -> list[dict]:
    return model.run(image, detect_confidence=0.7, nms=0.3, min_size=10, min_face=0.025, max_faces=50)


def quality(model, photos: Path, thresholds: tuple[float, ...]) -> None:
    store = FaceStore(f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")
    index = FaceIndex(store)
    for name, path in GALLERY.items():
        found = faces_of(model, cv2.imread(str(photos / path)))
        store.add(name, [found[0]["embedding"]])
    index.changed()
    same, other = [], []
    keys = ("named right", "named wrong", "missed (unknown)", "stranger unknown", "stranger named")
    counts = {t: dict.fromkeys(keys, 0) for t in thresholds}
    not_found = 0
    rows = []
    cases = [(photos / p, who) for p, who in PROBES.items()] + \
            [(DATA / p, [None] * n) for p, n in STRANGERS_HERE.items()]
    for path, who in cases:
        found = sorted(faces_of(model, cv2.imread(str(path))), key=lambda f: f["box"][0] + f["box"][2])
        not_found += max(0, len(who) - len(found))
        for face, truth in zip(found, who):
            m = index.search([face["embedding"]])[0]
            width = face["box"][2] - face["box"][0]
            (same if truth == m.userid else other).append(m.distance)
            for t in thresholds:
                named = m.userid if FaceIndex.named(m, width, t) else None
                if truth is None:
                    counts[t]["stranger unknown" if named is None else "stranger named"] += 1
                elif named is None:
                    counts[t]["missed (unknown)"] += 1
                else:
                    counts[t]["named right" if named == truth else "named wrong"] += 1
            rows.append((path.name, truth or "(stranger)", m.userid, m.distance,
                         (m.userid if FaceIndex.named(m, width, thresholds[0]) else None) or "unknown", width))
    print(f"{'photo':42} {'who':16} {'nearest':16} {'dist':>6} {'answer':16} {'width':>5}")
    for r in rows:
        print(f"{r[0][:42]:42} {r[1]:16} {r[2]:16} {r[3]:6.3f} {r[4]:16} {r[5]:5d}")
    print("\nnearest-distance histogram (same person = probe's own registration; other = a stranger's nearest):")
    edges = np.arange(0.2, 1.01, 0.05)
    hs, ho = np.histogram(same, edges)[0], np.histogram(other, edges)[0]
    for lo, a, b in zip(edges, hs, ho):
        print(f"  {lo:.2f}-{lo + 0.05:.2f}  same {'#' * a:20} {a:3d}   other {'#' * b:20} {b:3d}")
    print(f"\nsame person: {len(same)} faces, distance {min(same):.3f}-{max(same):.3f}; "
          f"others: {len(other)} faces, {min(other):.3f}-{max(other):.3f}; faces not found: {not_found}")
    for t in thresholds:
        print(f"at min_confidence {t} (distance <= {distance_at(t):.3f}, faces >= {MIN_NAMED_WIDTH} px): {counts[t]}")


def distance_at(threshold: float) -> float:
    """The largest distance whose confidence reaches ``threshold``."""
    lo, hi = 0.0, 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if confidence(mid) >= threshold else (lo, mid)
    return lo


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def load_model(path: Path, out: dict[str, float] | None = None):
    settings = load({"MYSITE_FACEID_MODEL": str(path), "MYSITE_LOG_LEVEL": "ERROR"}, environ={})
    before = rss_mb()
    model = Registry({k: v for k, v in read_specs().items() if k == "faceid"}, settings).get("faceid")
    if out is not None:
        out["load"] = rss_mb() - before
    return model


def embedding(model, loaded_mb: float) -> None:
    group = cv2.imread(str(DATA / "group_17_faces.jpg"))
    before = rss_mb()
    t = time.process_time()
    found = faces_of(model, group)
    cpu = time.process_time() - t
    print(f"\nmodel loaded (YuNet + dlib's two files): +{loaded_mb:.0f} MB RSS")
    print(f"group photo: {len(found)} faces found and embedded in {cpu:.2f} s CPU "
          f"({1000 * cpu / max(1, len(found)):.0f} ms a face); RSS +{rss_mb() - before:.0f} MB during the run")


def speed(n: int = 10_000) -> None:
    store = FaceStore(f"sqlite:///{tempfile.mkdtemp()}/speed.sqlite3")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 128)).astype(np.float32)
    vectors *= 1.45 / np.linalg.norm(vectors, axis=1, keepdims=True)  # as long as dlib's embeddings
    for start in range(0, n, 1000):
        store.add(f"person {start // 1000}", list(vectors[start:start + 1000]))
    index = FaceIndex(store)
    t = time.process_time()
    index.search(vectors[:1])
    print(f"\n{n} faces: first search (reads the store into memory) {1000 * (time.process_time() - t):.1f} ms CPU")
    for k in (1, 17):
        queries = vectors[:k] + 0.01
        reps = 50
        t, w = time.process_time(), time.perf_counter()
        for _ in range(reps):
            index.search(queries)
        print(f"search of {k:2d} face(s) among {n}: {1000 * (time.process_time() - t) / reps:.2f} ms CPU, "
              f"{1000 * (time.perf_counter() - w) / reps:.2f} ms wall each")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path, nargs="?", help="a checkout of github.com/ageitgey/face_recognition")
    ap.add_argument("--faces-model", type=Path, default=SHARED_MODEL)
    ap.add_argument("--min-confidence", type=float, nargs="+", default=[0.45, 0.67, 0.7],
                    help="thresholds to count at (the clients' defaults)")
    ap.add_argument("--speed-only", action="store_true", help="skip the quality part (no PHOTOS needed)")
    args = ap.parse_args()
    loaded: dict[str, float] = {}
    model = load_model(args.faces_model, loaded)
    if not args.speed_only:
        if args.photos is None:
            ap.error("PHOTOS is needed for the quality part (or --speed-only)")
        quality(model, args.photos, tuple(args.min_confidence))
    embedding(model, loaded["load"])
    speed()


if __name__ == "__main__":
    main()
