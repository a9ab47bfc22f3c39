"""Regenerate the example images of docs/plots.md: `python docs/img/make.py` (needs matplotlib; about ten seconds).

Trains the example configs into a temporary folder, renders one PNG per kind with
nntrain.report.plots.render, and writes docs/img/<kind>.png (plus boundary-epochs.gif). The
PNGs are reduced to a 256-colour palette here, for the repository's sake (each stays under
~100 KB); `nntrain plot` itself writes full-colour files.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent.parent / "configs"
sys.path.insert(0, str(HERE.parent.parent))

from nntrain.api import fit  # noqa: E402
from nntrain.report.plots import render  # noqa: E402

# run -> (config, overrides)
RUNS = {
    "quickstart": ("quickstart.yaml", ["train.checkpoint_every=2", "train.diagnostics=true"]),
    "quickstart-lr0.3": ("quickstart.yaml", ["optimizer.lr=0.3"]),
    "breast-cancer": ("breast_cancer.yaml", []),
    "sine": ("sine_regression.yaml", []),
    "digits": ("digits.yaml", []),
    "lenet-digits": ("lenet_digits.yaml", ["train.epochs=10"]),
    "text-reviews": ("text_reviews.yaml", ["train.epochs=10"]),
}

# image -> (runs, kind, options)
IMAGES = {
    "curves": (["quickstart"], "curves", {}),
    "curves-overlaid": (["quickstart", "quickstart-lr0.3"], "curves", {}),
    "confusion": (["digits"], "confusion", {}),
    "roc": (["breast-cancer"], "roc", {}),
    "pr": (["breast-cancer"], "pr", {}),
    "scatter": (["sine"], "scatter", {}),
    "residuals": (["sine"], "residuals", {}),
    "boundary": (["quickstart"], "boundary", {}),
    "boundary-epochs": (["quickstart"], "boundary-epochs", {"frames": 8, "max_points": 600}),
    "weights": (["digits"], "weights", {}),
    "filters": (["lenet-digits"], "filters", {}),
    "features": (["lenet-digits"], "features", {"layer": 2}),
    "diagnostics": (["quickstart"], "diagnostics", {}),
    "projection": (["digits"], "projection", {}),
    "projection-embedding": (["text-reviews"], "projection", {}),
}


def small_png(content: bytes) -> bytes:
    """The PNG with a 256-colour palette, compressed as far as Pillow goes."""
    image = Image.open(io.BytesIO(content)).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, (config, overrides) in RUNS.items():
            runs[name] = Path(tmp) / name
            fit(CONFIGS / config, overrides, run_dir=runs[name])
        for image, (names, kind, options) in IMAGES.items():
            fig = render([runs[n] for n in names], kind, "png", **options)
            path = HERE / f"{image}.png"
            path.write_bytes(small_png(fig.content))
            print(f"{path.relative_to(HERE.parent.parent)}: {path.stat().st_size // 1024} KB")
        fig = render([runs["quickstart"]], "boundary-epochs", "gif", frames=4, max_points=300, grid=60)
        (HERE / "boundary-epochs.gif").write_bytes(fig.content)
        print(f"docs/img/boundary-epochs.gif: {len(fig.content) // 1024} KB")


if __name__ == "__main__":
    main()
