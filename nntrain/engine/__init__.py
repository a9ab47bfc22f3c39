"""The NumPy engine: layers, losses, optimizers, the network; it knows nothing of configs, files or screens."""

from . import lbfgs  # noqa: F401  (registers lbfgs in OPTIMIZERS beside the optimizers of optim.py)
