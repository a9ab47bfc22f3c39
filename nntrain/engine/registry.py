"""Name -> class tables and the option ranges the config schema is generated from.

A layer, loss, initializer or optimizer declares its config options as the keyword-only
parameters of its constructor, annotated with a type and, where it has one, a `Range`.
The config module turns those signatures into its schema, so adding a component means
writing one class here in the engine and registering it; nothing else changes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Allowed interval for a numeric option, used as `Annotated[float, Range(ge=0)]`."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None


def did_you_mean(name: str, choices) -> str:
    """A ' (did you mean 'x'?)' suffix for a misspelled name, or ''."""
    if len(str(name)) > 100:  # no name is that long, and comparing megabytes takes a while
        return ""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(dict):
    """A dict from config name to class, filled by the `register` decorator."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        def add(cls):
            cls.name = name
            self[name] = cls
            return cls

        return add

    def get_class(self, name: str):
        if name not in self:
            allowed = ", ".join(sorted(self))
            raise KeyError(f"unknown {self.kind} '{name}'{did_you_mean(name, self)}; allowed: {allowed}")
        return self[name]
