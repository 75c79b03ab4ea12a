"""Distance distributions behind the match confidence: ``python -m bench.face_calibration PHOTOS``.

PHOTOS is a checkout of github.com/ageitgey/face_recognition (as for ``bench.faces``). Every
face of the registered people and the strangers (``bench.faces``' photos, and the astronaut
and the 17-face group photo of tests/data) is embedded at its own size and again with its photo
shrunk so that the face is W pixels wide (W = 24 … 64). Each probe face is compared with every
registration (``bench.faces``' five people plus the astronaut): its own person's gives a
*same-person* distance, every other one an *other-person* distance. Printed per face-width band:
the counts, the extremes, a histogram; then the ROC (share of same-person pairs named against
share of other-person pairs named, as the distance limit moves), and what every client's
default threshold names under the site's confidence mapping. ``--figure FILE`` draws the
histograms and ROC into a PNG (OpenCV, no other dependency).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bench.faces import DATA, GALLERY, PROBES, SHARED_MODEL, distance_at, faces_of, load_model
from mysite.faces.index import MIN_NAMED_WIDTH

# Every client's default min_confidence for recognize (from each package's source).
CLIENT_DEFAULTS = {
    "deepstack-python 0.8/0.9 (DEFAULT_MIN_CONFIDENCE)": 0.45,
    "codeproject-ai-api 0.1 (DEFAULT_MIN_CONFIDENCE)": 0.45,
    "DeepStack server, none sent (its documentation)": 0.67,
    "deepstack-sdk 0.2.1 (recognizeFace)": 0.70,
}
WIDTHS = (24, 32, 40, 48, 64)
BANDS = ((0, 40), (40, 60), (60, 10_000))


def _by_centre(faces: list[dict], x: float, y: float) -> dict | None:
    def off(f: dict) -> float:
        b = f["box"]
        return float(abs((b[0] + b[2]) / 2 - x) + abs((b[1] + b[3]) / 2 - y))

    best = min(faces, key=off, default=None)
    if best is None or off(best) > (best["box"][2] - best["box"][0]):
        return None
    return best


def probe_faces(model, photos: Path) -> list[tuple[str | None, int, np.ndarray, str]]:
    """(who, face width, embedding, photo) of every probe face, at its own size and shrunk."""
    cases = [(photos / p, who) for p, who in PROBES.items()]
    cases += [(DATA / "group_17_faces.jpg", [None] * 17)]
    out = []
    for path, who in cases:
        image = cv2.imread(str(path))
        found = sorted(faces_of(model, image), key=lambda f: f["box"][0] + f["box"][2])
        for face, truth in zip(found, who):
            x1, y1, x2, y2 = face["box"]
            out.append((truth, x2 - x1, np.asarray(face["embedding"]), path.name))
            for w in WIDTHS:
                scale = w / (x2 - x1)
                if scale >= 0.95:
                    continue
                small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                again = _by_centre(faces_of(model, small), (x1 + x2) / 2 * scale, (y1 + y2) / 2 * scale)
                if again is not None:
                    b = again["box"]
                    out.append((truth, b[2] - b[0], np.asarray(again["embedding"]), f"{path.name}@{w}"))
    return out


def gallery(model, photos: Path) -> dict[str, np.ndarray]:
    reg = {name: np.asarray(faces_of(model, cv2.imread(str(photos / p)))[0]["embedding"])
           for name, p in GALLERY.items()}
    reg["Eileen Collins"] = np.asarray(faces_of(model, cv2.imread(str(DATA / "astronaut.png")))[0]["embedding"])
    return reg


def draw(path: Path, bands: dict[str, tuple[list[float], list[float]]],
         curves: list[tuple[list[float], tuple[int, int, int]]]) -> None:
    """Histograms (one per width band) and the share named at each distance limit (the ROC's two axes), as a PNG."""
    h, w = 260, 420
    panels = []
    edges = np.arange(0.0, 1.2001, 0.025)
    limits = {name: distance_at(t) for name, t in CLIENT_DEFAULTS.items()}
    for title, (same, other) in bands.items():
        img = np.full((h, w, 3), 255, np.uint8)
        hs, ho = np.histogram(same, edges)[0], np.histogram(other, edges)[0]
        top = max(1, int(max(hs.max(initial=0), ho.max(initial=0))))
        x0, y0, pw, ph = 40, 30, w - 60, h - 70
        for i in range(len(edges) - 1):
            xa = x0 + int(pw * i / (len(edges) - 1))
            xb = x0 + int(pw * (i + 1) / (len(edges) - 1)) - 1
            for count, colour, half in ((hs[i], (60, 160, 40), 0), (ho[i], (40, 40, 200), 1)):
                if count:
                    mid = (xa + xb) // 2
                    xs = (xa, mid) if half == 0 else (mid, xb)
                    cv2.rectangle(img, (xs[0], y0 + ph - int(ph * count / top)), (xs[1], y0 + ph), colour, -1)
        for d in sorted(set(round(v, 3) for v in limits.values())):
            x = x0 + int(pw * d / 1.2)
            cv2.line(img, (x, y0), (x, y0 + ph), (0, 0, 0), 1)
        cv2.line(img, (x0, y0 + ph), (x0 + pw, y0 + ph), (0, 0, 0), 1)
        for t in (0.0, 0.4, 0.8, 1.2):
            x = x0 + int(pw * t / 1.2)
            cv2.putText(img, f"{t:.1f}", (x - 10, y0 + ph + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{title}: same (green) {len(same)}, other (red) {len(other)}", (8, 18),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
        cv2.putText(img, "distance; lines: client defaults' limits", (x0, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (80, 80, 80), 1)
        panels.append(img)
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, pw, ph = 40, 30, w - 60, h - 70
    cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), (200, 200, 200), 1)
    limits_x = np.arange(0.30, 0.8001, 0.005)
    for values, colour in curves:
        pts = np.array([(x0 + int(pw * (d - 0.3) / 0.5), y0 + ph - int(ph * float(np.mean(np.array(values) <= d))))
                        for d in limits_x], np.int32)
        cv2.polylines(img, [pts], False, colour, 2)
    for d in sorted(set(round(v, 3) for v in limits.values())):
        x = x0 + int(pw * (d - 0.3) / 0.5)
        cv2.line(img, (x, y0), (x, y0 + ph), (0, 0, 0), 1)
    for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        x = x0 + int(pw * (t - 0.3) / 0.5)
        cv2.putText(img, f"{t:.1f}", (x - 10, y0 + ph + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "share named at a distance limit: same >=40 px (green),", (8, 14), cv2.FONT_HERSHEY_SIMPLEX,
                0.38, (0, 0, 0), 1)
    cv2.putText(img, "other >=40 px (red), other <40 px (orange)", (8, 27), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                (0, 0, 0), 1)
    cv2.putText(img, "distance limit; lines: client defaults", (x0, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (80, 80, 80), 1)
    panels.append(img)
    while len(panels) % 2:
        panels.append(np.full((h, w, 3), 255, np.uint8))
    rows = [np.hstack(panels[i:i + 2]) for i in range(0, len(panels), 2)]
    cv2.imwrite(str(path), np.vstack(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path, help="a checkout of github.com/ageitgey/face_recognition")
    ap.add_argument("--faces-model", type=Path, default=SHARED_MODEL)
    ap.add_argument("--figure", type=Path, help="write the histograms and ROC to this PNG")
    args = ap.parse_args()
    model = load_model(args.faces_model)
    reg = gallery(model, args.photos)
    probes = probe_faces(model, args.photos)
    bands: dict[str, tuple[list[float], list[float]]] = {}
    named_wrong: list[str] = []
    for lo, hi in BANDS:
        same, other = [], []
        for who, width, vec, photo in probes:
            if not lo <= width < hi:
                continue
            for name, r in reg.items():
                d = float(np.linalg.norm(vec - r))
                (same if name == who else other).append(d)
                if name != who and d < 0.62:
                    named_wrong.append(f"{photo} ({width} px) {who or 'stranger'} ~ {name}: {d:.3f}")
        title = f"faces {lo}-{hi - 1} px" if hi < 10_000 else f"faces >= {lo} px"
        bands[title] = (same, other)
        print(f"\n{title}: {len(same)} same-person pairs, {len(other)} other-person pairs")
        if same:
            print(f"  same  min {min(same):.3f}  p95 {np.percentile(same, 95):.3f}  max {max(same):.3f}")
        if other:
            print(f"  other min {min(other):.3f}  p5 {np.percentile(other, 5):.3f}  max {max(other):.3f}")
        edges = np.arange(0.0, 1.2001, 0.05)
        hs, ho = np.histogram(same, edges)[0], np.histogram(other, edges)[0]
        for e, a, b in zip(edges, hs, ho):
            if a or b:
                print(f"  {e:.2f}-{e + 0.05:.2f}  same {a:4d}  other {b:4d}")
    print("\nother-person pairs closer than 0.62:")
    for line in named_wrong:
        print("  " + line)
    big_same = [d for t, (s, _) in bands.items() if not t.startswith("faces 0-") for d in s]
    big_other = [d for t, (_, o) in bands.items() if not t.startswith("faces 0-") for d in o]
    roc = []
    print("\nROC (faces >= 40 px): distance limit -> same named / other named")
    for limit in np.arange(0.30, 0.801, 0.01):
        tp = float(np.mean(np.array(big_same) <= limit))
        fp = float(np.mean(np.array(big_other) <= limit))
        roc.append((fp, tp))
        if round(limit * 100) % 5 == 0:
            print(f"  <= {limit:.2f}: same {tp:6.1%}  other {fp:6.1%}")
    roc = [(0.0, 0.0)] + roc + [(1.0, 1.0)]
    print(f"\nthe site's mapping (faces under {MIN_NAMED_WIDTH} px are never named):")
    all_same = [d for s, _ in bands.values() for d in s]
    for name, t in CLIENT_DEFAULTS.items():
        limit = distance_at(t)
        print(f"  {name}: min_confidence {t} names distance <= {limit:.3f}: "
              f"same named {np.mean(np.array(big_same) <= limit):.1%}, other named "
              f"{int(np.sum(np.array(big_other) <= limit))} of {len(big_other)} (>= 40 px); "
              f"all same incl. small {np.mean(np.array(all_same) <= limit):.1%}")
    if args.figure:
        small_other = next(o for t, (_, o) in bands.items() if t.startswith("faces 0-"))
        draw(args.figure, bands, [(big_same, (60, 160, 40)), (big_other, (40, 40, 200)), (small_other, (0, 140, 255))])
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
