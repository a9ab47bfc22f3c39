"""YAML from untrusted text (config files, `--set` values, sweep.yaml): bounded before it is built.

A config is a few kilobytes of nested mappings, so anything far outside that is refused with
an NntrainError before PyYAML builds Python objects from it:
  MAX_BYTES   the text's size (a 10 MB config took a minute to parse, to say "unknown key")
  MAX_DEPTH   nesting of mappings and lists (PyYAML's composer recurses: a deep enough file
              ends in RecursionError, or in a crash of the C parser)
  MAX_NODES   values after expanding aliases ("billion laughs": 400 bytes that expand to 10^9
              values, which hung nntrain while it built and then printed them)
  64 bits     integers (nothing nntrain takes needs more, and numpy cannot hold more)
The bounds are checked on PyYAML's event stream, which it produces without recursion or
expansion: an alias counts the values of its anchor without copying them. Parsing uses
libyaml (PyYAML's C loader) where PyYAML was built with it: about 20 times faster.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import NntrainError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000
INT_LIMIT = 1 << 63

def loader(base=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """nntrain's loader on `base`: libyaml's CSafeLoader where PyYAML has it, else the Python SafeLoader."""

    class Loader(base):
        """A safe loader that reads 1e-3 as a number (YAML 1.1 wants 1.0e-3 and gives a string),
        refuses a key given twice in one mapping (YAML keeps the last one, silently), takes only
        plain values as keys, and only integers that fit in 64 bits."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise yaml.constructor.ConstructorError(
                        None, None, "a key must be a plain value (a name or a number), not a list or a mapping",
                        key_node.start_mark,
                    )
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key '{key}' appears twice in the same section", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node):
            # Python refuses to convert more than 4300 digits; past 25 characters it is out of range anyway.
            value = super().construct_yaml_int(node) if len(node.value) <= 25 else None
            if value is None or not -INT_LIMIT <= value < INT_LIMIT:
                text = node.value if len(node.value) <= 25 else f"of {len(node.value):,} characters"
                raise yaml.constructor.ConstructorError(
                    None, None, f"the integer {text} does not fit in 64 bits (|n| < 2**63)", node.start_mark
                )
            return value

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    return Loader


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader = loader()


def _check_events(text: str) -> None:
    """Refuse text nested deeper than MAX_DEPTH, or whose aliases expand past MAX_NODES values."""
    depth, total = 0, 0
    sizes: dict[str, int] = {}  # anchor -> values in what it names
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, total when the collection opened)
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise NntrainError(f"is nested more than {MAX_DEPTH} levels deep (a config needs a handful)")
            total += 1
            open_nodes.append((event.anchor, total))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            anchor, start = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = total - start + 1
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if not event.value.isascii():  # PyYAML's Python parser turns "\ud800" into half a character
                try:
                    event.value.encode("utf-8")
                except UnicodeEncodeError:
                    raise NntrainError(f"has a string with an invalid character (line {event.start_mark.line + 1})") from None
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            total += sizes.get(event.anchor, 1)  # an unknown anchor: the parser below reports it
        if total > MAX_NODES:
            aliases = " (counting what its aliases '*name' repeat)" if sizes else ""
            raise NntrainError(f"holds more than {MAX_NODES:,} values{aliases}; a config holds far fewer")


def _load(text: str):
    """One YAML document's value; NntrainError for text out of bounds, yaml.YAMLError for text that is no YAML."""
    if len(text) > MAX_BYTES:  # characters; a quick bound before encoding
        raise NntrainError(f"is {len(text):,} characters long; the limit is {MAX_BYTES:,} (a config is a few kilobytes)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: what Python makes of bytes that are not UTF-8 in argv
        raise NntrainError(f"is not valid UTF-8 text (position {e.start})") from None
    _check_events(text)
    return yaml.load(text, Loader=_Loader)


def parse(text: str, source: str = "the YAML text"):
    """The value of one YAML document, or NntrainError naming `source` and what is wrong with it."""
    try:
        return _load(text)
    except NntrainError as e:
        raise NntrainError(f"{source} {e}") from None
    except yaml.YAMLError as e:
        raise NntrainError(f"{source} is not valid YAML: {e}") from None


def parse_value(text: str, source: str):
    """A `--set` value: its YAML value, or the text itself when it is not YAML (an unquoted string with a colon)."""
    try:
        return _load(text)
    except NntrainError as e:
        raise NntrainError(f"{source} {e}") from None
    except yaml.YAMLError:
        return text


def read(path: Path, what: str = "file"):
    """The YAML value of a file, read as UTF-8; its size is checked before it is read. `what` names it in errors."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise NntrainError(f"{what} '{path}' is larger than {MAX_BYTES:,} bytes; a config is a few kilobytes")
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise NntrainError(f"{what} '{path}' does not exist") from None
    except IsADirectoryError:
        raise NntrainError(f"{what} '{path}' is a directory, not a YAML file") from None
    except UnicodeDecodeError as e:
        raise NntrainError(f"{what} '{path}' is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise NntrainError(f"cannot read {what} '{path}': {e.strerror or e}") from None
    return parse(text, f"'{path}'")
