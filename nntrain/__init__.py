"""nntrain: config-driven neural-network training on a NumPy engine.

    import nntrain
    summary = nntrain.fit("configs/quickstart.yaml")   # see nntrain.api
"""

__version__ = "0.1.0"

_API = ("fit", "resume", "evaluate_run", "predict_run", "gradcheck", "load_run")


def __getattr__(name):
    # Loaded on first use, so that `nntrain --help` does not pay for numpy and pydantic.
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'nntrain' has no attribute {name!r}")
