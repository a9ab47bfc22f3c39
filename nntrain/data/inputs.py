"""New samples for a saved run that are not tables: .npz / .npy arrays and image folders (predict, eval --data).

They come out as rows of the run's sample shape (`shapes.fit_shape` says which shapes fit),
images read with the size and mode the run was trained with; scaling is the caller's
(the run's saved statistics, Experiment.encode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NntrainError
from .files import read_arrays
from .images import ImageOptions, is_folder, read_folder
from .shapes import fit_shape

ARRAY_SUFFIXES = (".npz", ".npy")


@dataclass
class Inputs:
    """X (rows, prod(sample_shape)) for the run; y the raw labels (eval) or None; names the files of a folder's rows."""

    X: np.ndarray
    y: np.ndarray | None = None
    paths: list[Path] | None = None  # an image folder: each row's file
    problems: dict[int, str] = field(default_factory=dict)  # predict on a folder: rows whose image could not be read
    lengths: np.ndarray | None = None  # an .npz of sequences: their real lengths (its `lengths`)


def is_input_file(path) -> bool:
    """Whether `path` is read here (arrays or a folder) rather than as a table."""
    return str(path).lower().endswith(ARRAY_SUFFIXES) or is_folder(path)


def run_image_options(sample_shape: tuple[int, ...], image) -> ImageOptions:
    """How a run reads images: its config's data.image (recorded when it trained on a folder), else its sample shape."""
    if image is not None and image.size is not None and image.mode != "auto":
        return ImageOptions(tuple(image.size), image.mode)
    return ImageOptions.for_shape(sample_shape)


def read_inputs(path: Path, sample_shape: tuple[int, ...], image, with_target: bool) -> Inputs:
    """The samples of an .npz, an .npy (X alone: predict only) or an image folder, as rows of `sample_shape`.

    `image`: the run's data.image (or None). `with_target` (eval): labels are needed: an .npz's
    y, a folder's class subfolders. Without it (predict) a folder may hold images anywhere one
    level deep, and an image that cannot be read is a problem of its row, not an error.
    """
    path = Path(path)
    if is_folder(path):
        options = run_image_options(sample_shape, image)
        folder = read_folder(path, options, labelled=with_target)
        fit_shape(f"{path} (read as {options.mode} images of {options.size[0]} x {options.size[1]})", folder.sample_shape, sample_shape)
        return Inputs(folder.X, folder.labels, folder.paths, folder.problems)
    if with_target and str(path).lower().endswith(".npy"):
        raise NntrainError(
            f"{path}: an .npy holds no labels; eval --data needs them: a table, an .npz with X and y, or an image"
            " folder with one subfolder per class"
        )
    data = read_arrays(path, with_target)
    fit_shape(f"{path}: X", data.sample_shape, sample_shape)
    return Inputs(data.X, data.y, lengths=data.lengths)
