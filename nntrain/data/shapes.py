"""The shape of one sample: (features,) for tables, (channels, height, width) for images, (steps, features) for sequences.

The data pipeline holds X as rows of prod(sample_shape) numbers (C order: channel by channel,
each channel row by row), so splitting, scaling, batching and reading from disk never need to
know the shape; the network views each batch as (batch, *sample_shape).
"""

from __future__ import annotations

import math

from ..errors import NntrainError

ARRAY_NDIMS = (2, 3, 4)  # X of an .npz / .npy: (N, features), (N, height, width), (N, channels, height, width)


def sample_shape_of(array_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The sample shape of an array X of `array_shape`: (N, F) -> (F,); (N, H, W) -> (1, H, W); (N, C, H, W) -> (C, H, W)."""
    shape = tuple(int(n) for n in array_shape[1:])
    return (1, *shape) if len(shape) == 2 else shape


def shape_text(shape) -> str:
    """A sample shape as users read it: (1, 28, 28), (64,)."""
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def fit_shape(where: str, shape: tuple[int, ...], run_shape: tuple[int, ...]) -> None:
    """NntrainError unless samples of `shape` (new inputs) can go into a run trained on samples of `run_shape`.

    Equal shapes fit; so do flat rows of the right width for a run on images (the rows nntrain
    itself keeps), and images for a run on flat rows of that many values (a run with
    data.flatten: true). Two different image shapes never fit, even with as many values: the
    pixels would be read in the wrong places.
    """
    shape, run_shape = tuple(shape), tuple(run_shape)
    if shape == run_shape:
        return
    # A stack of 2-D arrays is read as one-channel images (1, T, D); for a run on sequences (T, D) they are those.
    if shape[:1] == (1,) and shape[1:] == run_shape and len(run_shape) == 2:
        return
    if math.prod(shape) == math.prod(run_shape) and (len(shape) == 1 or len(run_shape) == 1):
        return
    raise NntrainError(
        f"{where} holds samples of shape {shape_text(shape)} ({math.prod(shape)} values each), but the run was trained"
        f" on samples of shape {shape_text(run_shape)} ({math.prod(run_shape)} values)"
    )
