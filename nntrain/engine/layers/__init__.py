"""The layers, one module per family; `LAYERS` maps config names to classes (see `base` for the protocol)."""

from . import activations, conv, dense, embedding, noise, norm, pool, recurrent, sequence  # noqa: F401  (registers the layers)
from .activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import LAYERS, Layer, Shape, ShapeError
from .conv import Conv2d
from .dense import Flatten, Identity, InitName, Linear
from .noise import Dropout, GaussianNoise
from .norm import BatchNorm, LayerNorm
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d

__all__ = [
    "LAYERS",
    "AvgPool2d",
    "BatchNorm",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GaussianNoise",
    "GlobalAvgPool",
    "Identity",
    "InitName",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Shape",
    "ShapeError",
    "Sigmoid",
    "Softmax",
    "Tanh",
]
