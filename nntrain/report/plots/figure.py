"""The shared part of every plot: matplotlib imported only when drawing, fixed sizes, deterministic files.

Nothing here touches pyplot or the global backend: a figure is a `matplotlib.figure.Figure`
drawn on its own Agg canvas, so plotting from a notebook or a program that uses another
backend changes nothing there. Every figure is drawn under matplotlib's default style with
a few fixed settings (`RC`), whatever the user's matplotlibrc says, so the same run gives the
same bytes:

- PNG: Agg output with fixed metadata (Software: nntrain), no timestamp.
- SVG: `svg.hashsalt` fixed (the ids of clip paths and glyphs are otherwise random), no Date
  in the metadata, text as paths (no dependence on the reader's fonts).
- GIF (an animation): frames drawn as PNG would be, joined by Pillow with a fixed frame time.

Sizes are in inches at DPI dots per inch; a figure's pixel size is (width * DPI, height * DPI).
No `bbox_inches="tight"`: the size a kind declares is the size of its file.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ...errors import NntrainError

DPI = 100
SIZE = (8.0, 5.0)  # inches: 800 x 500 pixels, the size of most kinds
FORMATS = ("png", "svg")  # every kind; an animation (boundary-epochs) also "gif"
INSTALL = "pip install 'nntrain[plot]'"
GIF_FRAME_MS = 600  # how long each frame of an animation shows

RC = {
    "svg.hashsalt": "nntrain",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "image.interpolation": "nearest",
    "path.simplify": False,  # the curves drawn are the numbers, not a simplification of them
}


@dataclass
class Figure:
    """One rendered plot.

    kind: one of KINDS; fmt: png | svg | gif; content: the file's bytes; data: the numbers
    drawn, JSON-ready (lists, floats, strings), for tests and `--json`; size: (width, height)
    in pixels (an SVG declares it as width * 0.72 by height * 0.72 points).
    """

    kind: str
    fmt: str
    content: bytes
    data: dict
    size: tuple[int, int] = field(default=(0, 0))


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported (the `plot` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib() -> None:
    """NntrainError saying how to install matplotlib, unless it can be imported."""
    if not have_matplotlib():
        raise NntrainError(f"drawing plots needs matplotlib, which is not installed: {INSTALL}")


@contextmanager
def drawing():
    """Matplotlib's default style with RC on top, for the duration of one figure."""
    require_matplotlib()
    import matplotlib
    import matplotlib.style

    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        yield


def new_figure(size: tuple[float, float] = SIZE):
    """A matplotlib Figure of `size` inches on its own Agg canvas, with the constrained layout.

    Call inside `drawing()`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def integer_ticks(ax) -> None:
    """Whole numbers only on the x axis (epochs)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def pixel_size(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches()
    return int(round(width * DPI)), int(round(height * DPI))


def save(fig, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes, deterministically (see the module docstring)."""
    buffer = io.BytesIO()
    if fmt == "png":
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": "nntrain"})
    elif fmt == "svg":
        fig.savefig(buffer, format="svg", dpi=DPI, metadata={"Date": None, "Creator": "nntrain"})
    else:  # the callers check fmt first
        raise ValueError(f"cannot save a figure as {fmt}")
    return buffer.getvalue()


def rgb_frame(fig) -> np.ndarray:
    """The figure drawn on its Agg canvas, as an (height, width, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def gif(frames: list[np.ndarray]) -> bytes:
    """An animated GIF of RGB frames (all of one size), looping, GIF_FRAME_MS per frame (the last shows 3x longer).

    Every frame is reduced to one shared 256-colour palette (that of the last frame, where the
    boundary has settled), so the colours do not flicker from frame to frame.
    """
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    palette = images[-1].quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    quantized = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    buffer = io.BytesIO()
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_FRAME_MS * 3]
    quantized[0].save(buffer, format="GIF", save_all=True, append_images=quantized[1:], duration=durations, loop=0)
    return buffer.getvalue()


def wrap_titles(fig) -> None:
    """Break titles too long for their axes (or the figure) into lines: a long run name must not run off the edge."""
    import textwrap

    width_px = pixel_size(fig)[0]
    title_px = 6.0  # about the width of a character of a 9-10 point title, in pixels at DPI
    for ax in fig.axes:
        text = ax.get_title()
        if text:
            chars = max(20, int(ax.get_position().width * width_px / title_px))
            ax.title.set_text("\n".join(textwrap.fill(line, chars) for line in text.split("\n")))  # keeps its font
    text = fig.get_suptitle()
    if text:
        fig.suptitle("\n".join(textwrap.fill(line, int(width_px / (title_px * 1.1))) for line in text.split("\n")))  # default font


def finish(kind: str, fig, fmt: str, data: dict) -> Figure:
    """The Figure result of a drawn matplotlib figure (titles wrapped to fit)."""
    wrap_titles(fig)
    return Figure(kind, fmt, save(fig, fmt), data, pixel_size(fig))


def class_colors(n: int) -> list:
    """n distinct colours for classes, in class order: tab10 up to 10 classes, tab20 up to 20, then a spread of hsv."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](k) for k in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](k) for k in range(n)]
    return [matplotlib.colormaps["hsv"](k / n) for k in range(n)]


def tile_grid(count: int, aspect: float = 1.6) -> tuple[int, int]:
    """(rows, columns) of a grid for `count` small images in a figure about `aspect` times wider than high."""
    columns = max(1, int(np.ceil(np.sqrt(count * aspect))))
    rows = max(1, int(np.ceil(count / columns)))
    return rows, columns


def tiles(images: np.ndarray, rows: int, columns: int, pad: int = 1, fill: float = np.nan) -> np.ndarray:
    """Images (n, h, w) [or (n, h, w, 3)] laid out in a rows x columns mosaic separated by `pad` cells of `fill`."""
    n, h, w = images.shape[:3]
    extra = images.shape[3:]
    out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, *extra), fill, dtype=np.float64)
    for k in range(min(n, rows * columns)):
        r, c = divmod(k, columns)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[k]
    return out


def as_list(values) -> list:
    """A numpy array (or number) as plain Python lists / floats, NaN kept (JSON writers turn it into null)."""
    return np.asarray(values).tolist()
