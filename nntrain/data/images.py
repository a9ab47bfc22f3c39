"""Image folders: one subfolder per class, images inside, read through Pillow into rows of pixels.

    shapes/                   data.dataset: shapes/  (or data.train / .val / .test: one folder each)
      circle/  000.png 001.png ...
      square/  000.png ...

The class names are the subfolder names, sorted. Every image is converted to grayscale (1
channel) or RGB (3), resized to one (height, width), and becomes a sample of shape
(channels, height, width), float32 in [0, 1] (the 8-bit values divided by 255); X holds the
samples as rows of channels * height * width pixels, channel by channel, each row by row.
PNG, JPEG, BMP and GIF files are read (a GIF's first frame; alpha is dropped; a JPEG's EXIF
orientation is applied). Names starting with '.' (.DS_Store, .git) are skipped; anything
else that is not such an image is an error naming the file. Pillow is imported only here, when
a folder is read.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NntrainError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # Pillow's decoders (JPEG's opens cameras' multi-picture files too, as MPO)
ALLOWED = "PNG, JPEG, BMP or GIF images (.png, .jpg, .jpeg, .bmp, .gif)"
CHANNELS = {"grayscale": 1, "rgb": 3}
_PIL_MODES = {"grayscale": "L", "rgb": "RGB"}
_GRAY = ("1", "L", "LA")  # Pillow modes without colour: mode auto reads them as grayscale
_ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the picture a quarter, swapping width and height

# What Pillow raises on a damaged or crafted file (UnidentifiedImageError and "image file is
# truncated" are OSErrors; broken PNG chunks are SyntaxErrors). Each means the file cannot be
# read as an image, none is a bug of nntrain.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, struct.error, zlib.error)


@dataclass(frozen=True)
class ImageOptions:
    """How images become samples: data.image's size and mode.

    size: (height, width) every image is resized to; None: their own, which must be one for all.
    mode: grayscale | rgb | auto (grayscale when every image is, else rgb).
    """

    size: tuple[int, int] | None = None
    mode: str = "auto"

    @property
    def resolved(self) -> bool:
        return self.size is not None and self.mode != "auto"

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of a resolved one."""
        return (CHANNELS[self.mode], *self.size)

    @classmethod
    def for_shape(cls, shape: tuple[int, ...]) -> "ImageOptions":
        """The options that read images as samples of `shape` (C, H, W) with C 1 or 3; NntrainError otherwise."""
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise NntrainError(
                f"the run was trained on samples of shape {tuple(shape)}, not on images of 1 (grayscale) or 3 (rgb)"
                " channels, so it cannot read an image folder"
            )
        return cls((int(shape[1]), int(shape[2])), "grayscale" if shape[0] == 1 else "rgb")


@dataclass
class ImageFolder:
    """The images of a folder, read: X (rows, channels * height * width) float32 in [0, 1], one row per file."""

    X: np.ndarray
    paths: list[Path]  # the file of each row
    options: ImageOptions  # resolved: the size and mode they were read with
    labels: np.ndarray | None = None  # (rows,) the class (subfolder) name of each row; None for predict's images
    classes: list[str] | None = None  # the subfolder names, sorted
    problems: dict[int, str] = field(default_factory=dict)  # predict: rows whose file could not be read (X is NaN)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return self.options.sample_shape


def is_folder(path) -> bool:
    try:
        return Path(path).expanduser().is_dir()
    except (OSError, ValueError):  # a path the system refuses to look up is no folder
        return False


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of `folder` that are not hidden, by name."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise NntrainError(f"{folder}: cannot list the folder ({e.strerror or e})") from None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links, as the rest of the path does
    except OSError:
        return False


def _images_in(folder: Path, what: str) -> list[Path]:
    """The image files of a class folder (or a folder of images, for predict); NntrainError for anything else."""
    files = []
    for entry in _entries(folder):
        path = folder / entry.name
        if _is_dir(entry):
            raise NntrainError(f"{path}: a folder inside {what}; it may hold only {ALLOWED}")
        if not entry.name.lower().endswith(IMAGE_SUFFIXES):
            raise NntrainError(f"{path}: not an image file by its name; {what} may hold only {ALLOWED}")
        files.append(path)
    return files


def class_files(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """(class names sorted, every image file, the class name of each) of a folder with one subfolder per class."""
    entries = _entries(root)
    folders = [e for e in entries if _is_dir(e)]
    stray = [e for e in entries if not _is_dir(e)]
    if stray:
        raise NntrainError(
            f"{root / stray[0].name}: a file directly in the image folder {root}; it may hold only one subfolder"
            " per class, with the images inside"
        )
    if not folders:
        raise NntrainError(
            f"{root} has no subfolders; an image folder holds one subfolder per class, with the images inside"
            f" (e.g. {root / 'cat' / '1.png'}, {root / 'dog' / '2.png'})"
        )
    classes, files, labels = [], [], []
    for entry in folders:
        images = _images_in(root / entry.name, f"class folder '{entry.name}'")
        if not images:
            raise NntrainError(f"{root / entry.name}: class folder '{entry.name}' holds no images; put {ALLOWED} in it, or remove it")
        classes.append(entry.name)
        files += images
        labels += [entry.name] * len(images)
    return classes, files, np.array(labels, dtype=np.str_)


def loose_files(root: Path) -> list[Path]:
    """predict: the images directly in `root` and in its subfolders (one level, e.g. class folders), by path."""
    files = []
    for entry in _entries(root):
        if _is_dir(entry):
            files += _images_in(root / entry.name, f"folder '{entry.name}'")
        elif entry.name.lower().endswith(IMAGE_SUFFIXES):
            files.append(root / entry.name)
        else:
            raise NntrainError(f"{root / entry.name}: not an image file by its name; the folder may hold only {ALLOWED} (and folders of them)")
    if not files:
        raise NntrainError(f"{root} holds no images; predict reads the {ALLOWED} in it and in its subfolders")
    return files


def read_folder(root: Path, options: ImageOptions, labelled: bool = True) -> ImageFolder:
    """A folder's images as rows. `labelled`: one subfolder per class (training, eval); else any images (predict).

    Training resolves `options` from the images; predict and eval pass the run's, resolved.
    With `labelled` every file must read; without, a file that does not is a problem of its row.
    """
    if labelled:
        classes, paths, labels = class_files(root)
    else:
        classes, paths, labels = None, loose_files(root), None
    problems = None if labelled else {}
    X, options = read_images(paths, options, problems)
    return ImageFolder(X, paths, options, labels, classes, problems or {})


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:  # a core dependency, but an install may lack it
        raise NntrainError("reading image folders needs Pillow: pip install pillow") from None
    return Image, ImageOps


def _unreadable(path: Path, e: Exception) -> str:
    return f"{path}: cannot be read as an image ({type(e).__name__}: {e}); allowed: {ALLOWED}"


def _open(Image, path: Path):
    """The image at `path`, opened (header read, pixels not yet decoded); refuses 16-bit and float images."""
    img = Image.open(path, formats=_FORMATS)
    if img.mode.startswith("I") or img.mode == "F":
        img.close()
        raise NntrainError(
            f"{path}: a 16-bit or floating-point image (mode {img.mode}); nntrain reads images of 8 bits per channel"
        )
    return img


def _size(img) -> tuple[int, int]:
    """(height, width) as the image is meant to be seen: a JPEG's EXIF orientation may turn it a quarter."""
    width, height = img.size
    if img.format in ("JPEG", "MPO") and img.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
        width, height = height, width
    return height, width


def _headers(Image, paths: list[Path]) -> tuple[list[tuple[int, int]], list[str]]:
    """(height, width) and Pillow mode of every image, from the headers alone (nothing decoded)."""
    sizes, modes = [], []
    for path in paths:
        try:
            with _open(Image, path) as img:
                sizes.append(_size(img))
                modes.append(img.mode)
        except _DECODE_ERRORS + (Image.DecompressionBombError,) as e:
            raise NntrainError(_unreadable(path, e)) from None
    return sizes, modes


def resolve(options: ImageOptions, paths: list[Path]) -> ImageOptions:
    """Options with size and mode decided from the images' headers where data.image leaves them open.

    Without a size the images must all have one; a mix is an error that names two of them.
    """
    if options.resolved:
        return options
    Image, _ = _pillow()
    sizes, modes = _headers(Image, paths)
    size = options.size
    if size is None:
        first = sizes[0]
        other = next((i for i, s in enumerate(sizes) if s != first), None)
        if other is not None:
            (h0, w0), (h1, w1) = first, sizes[other]
            raise NntrainError(
                f"the images differ in size: {paths[0]} is {h0} x {w0} pixels (height x width), {paths[other]} is"
                f" {h1} x {w1}; set data.image.size: [height, width] to resize them all to one size",
                "data.image.size",
            )
        size = first
    mode = options.mode
    if mode == "auto":
        mode = "grayscale" if all(m in _GRAY for m in modes) else "rgb"
    return ImageOptions(tuple(int(n) for n in size), mode)


def read_images(paths: list[Path], options: ImageOptions, problems: dict[int, str] | None = None):
    """(X (len(paths), C * H * W) float32 in [0, 1], the resolved options) of the image files.

    One numpy array per image (Pillow converts and resizes, numpy lays out the channels), then
    one division for all. Without `problems` a file that cannot be read is an NntrainError;
    with it, the row is NaN and `problems[i]` says why.
    """
    Image, ImageOps = _pillow()
    options = resolve(options, paths)
    channels, height, width = options.sample_shape
    pil_mode = _PIL_MODES[options.mode]
    pixels = np.zeros((len(paths), channels, height, width), dtype=np.uint8)
    failed = []
    for i, path in enumerate(paths):
        try:
            with _open(Image, path) as img:
                picture = ImageOps.exif_transpose(img) if img.format in ("JPEG", "MPO") else img
                if picture.mode == "P" and "transparency" in picture.info:
                    picture = picture.convert("RGBA")  # what Pillow asks for before a palette's transparency is dropped
                picture = picture.convert(pil_mode)  # grayscale or RGB; alpha is dropped
                if picture.size != (width, height):
                    picture = picture.resize((width, height), Image.Resampling.BILINEAR)
                a = np.asarray(picture, dtype=np.uint8)
        except (NntrainError, Image.DecompressionBombError, *_DECODE_ERRORS) as e:
            message = str(e) if isinstance(e, NntrainError) else _unreadable(path, e)
            if problems is None:
                raise NntrainError(message) from None
            problems[i] = message.removeprefix(f"{path}: ")
            failed.append(i)
            continue
        pixels[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)  # (H, W, 3) -> channels first
    X = pixels.reshape(len(paths), -1).astype(np.float32)
    np.divide(X, 255, out=X)
    X[failed] = np.nan
    return X, options
