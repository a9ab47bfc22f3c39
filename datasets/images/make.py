"""Make the example image folder: small grayscale PNGs of three shapes, one subfolder per class.

    python datasets/images/make.py                  # writes datasets/images/shapes/ (the committed copy)
    python datasets/images/make.py --out /tmp/shapes --per-class 100 --seed 1

    shapes/
      circle/    000.png ... 039.png
      square/    000.png ...
      triangle/  000.png ...

Each image is SIZE x SIZE pixels (16 by default): one light shape of random size, position
and brightness near the centre of a dark background, with pixel noise. The same seed gives the
same pixels (the PNG bytes too, with the same Pillow). configs/image_folder.yaml trains on the
folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
HERE = Path(__file__).resolve().parent


def draw(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size) uint8 image of `shape`: its box 60-75 % of the image, centred to within a pixel.

    Near the centre, so that even an MLP on the raw pixels can tell the shapes apart from a few
    dozen examples; anywhere in the image would need a convolution's translation invariance.
    """
    canvas = Image.new("L", (size, size), color=int(rng.integers(0, 40)))
    pen = ImageDraw.Draw(canvas)
    extent = int(rng.integers(round(0.6 * size), round(0.75 * size) + 1))
    centred = (size - extent) // 2
    left, top = (int(min(max(centred + v, 0), size - extent)) for v in rng.integers(-1, 2, size=2))
    box = (left, top, left + extent - 1, top + extent - 1)
    light = int(rng.integers(150, 256))
    if shape == "circle":
        pen.ellipse(box, fill=light)
    elif shape == "square":
        pen.rectangle(box, fill=light)
    else:  # pointing up: apex at the top middle
        pen.polygon([(left + (extent - 1) / 2, top), (left, top + extent - 1), (left + extent - 1, top + extent - 1)], fill=light)
    noisy = np.asarray(canvas, dtype=np.float64) + rng.normal(0, 12, size=(size, size))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def make(out: Path, per_class: int = 40, size: int = 16, seed: int = 0) -> list[Path]:
    """Write per_class PNGs of each class under out/<class>/; returns the files written, class by class."""
    rng = np.random.default_rng(seed)
    written = []
    for shape in CLASSES:
        folder = out / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / f"{i:03d}.png"
            Image.fromarray(draw(shape, size, rng), mode="L").save(path, optimize=True)
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "shapes", help="folder to write (default: datasets/images/shapes)")
    parser.add_argument("--per-class", type=int, default=40, help="images per class (default 40)")
    parser.add_argument("--size", type=int, default=16, help="height and width in pixels (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.per_class < 1 or args.size < 4:
        parser.error("--per-class must be >= 1 and --size >= 4")
    files = make(args.out, args.per_class, args.size, args.seed)
    print(f"wrote {len(files)} images ({args.size} x {args.size}, {len(CLASSES)} classes) to {args.out}")


if __name__ == "__main__":
    main()
