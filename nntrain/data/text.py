"""Text as sequences of token ids: the tokenizer, and the vocabulary built on the training texts.

Tokens. A `Tokenizer` lower-cases a text (with `lower`), puts it in Unicode NFC form (an accent
typed composed or decomposed gives the same tokens), then splits it:
  char: every character is a token, whitespace included as it is (a language model must be
        able to write spaces and newlines);
  word: words and punctuation; whitespace separates tokens and is dropped (see `Tokenizer`).

Ids. 0 is padding (`<pad>`), 1 the unknown token (`<unk>`: every token not in the vocabulary),
then the vocabulary's tokens from 2 on. A text becomes `max_length` ids: its first max_length
tokens (a longer text loses its end), then padding; its length is the number of real steps. An
empty text becomes one `<unk>` step of length 1: every sequence has at least one step.

The vocabulary is built on the training texts only: the tokens that occur at least `min_count`
times there, most frequent first, equal counts in code-point order of the token (never in hash
or input order), at most `max_size` ids in all, the two specials included. A token spelled
`<pad>` or `<unk>` in the data is not special: it is out of vocabulary (id 1), as is a token
ending in the NUL character, which a numpy text array cannot hold.

Saved with the run (`Vocabulary.state`, plain arrays, loadable with allow_pickle=False):
  <prefix>.vocabulary   (size,) str   the token of each id, '<pad>' and '<unk>' first
  <prefix>.tokens       () str        the tokenizer: 'char' or 'word'
  <prefix>.lower        () bool       whether texts are lower-cased
  <prefix>.max_length   () int64      ids per text (at most MAX_LENGTH = 2**20)
"""

from __future__ import annotations

import functools
import operator
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, repeat

import numpy as np

from ..errors import NntrainError, short_repr
from ..npzfile import Member

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
KINDS = ("char", "word")
MAX_LENGTH = 2**20  # ids per text at most: a damaged max_length must not allocate terabytes


@functools.lru_cache(maxsize=1)
def _word_pattern() -> re.Pattern:
    """The `word` rule as a regular expression (built once: listing the combining marks takes ~25 ms)."""
    # re's \w leaves out combining marks (Unicode category M), which would cut words of many
    # scripts (Devanagari vowel signs, a decomposed accent that NFC cannot compose) into pieces.
    codes = [c for c in chain(range(0x20000), range(0xE0100, 0xE01F0)) if unicodedata.category(chr(c))[0] == "M"]
    spans, start = [], codes[0]
    for prev, c in zip(codes, codes[1:] + [None]):
        if c != prev + 1:
            spans.append(f"\\U{start:08x}-\\U{prev:08x}" if prev > start else f"\\U{start:08x}")
            start = c
    marks = "".join(spans)
    word = f"[\\w{marks}]+"
    return re.compile(f"{word}(?:['\u2019]{word})*|[^\\w\\s{marks}]")


@dataclass(frozen=True)
class Tokenizer:
    """How a text becomes tokens: `split(text) -> list[str]`.

    tokens = "char": every character, whitespace included.
    tokens = "word": after lower-casing (with `lower`) and NFC, a word is a run of word characters
      (re's \\w: Unicode letters, digits and the underscore, plus combining marks), which may hold
      an apostrophe (' or \u2019) between two word characters; every other character that is not
      whitespace (punctuation, symbols, emoji) is a token of its own; whitespace only separates.

        >>> Tokenizer("word").split("Don't stop, O'Neil!")
        ["don't", 'stop', ',', "o'neil", '!']
        >>> Tokenizer("word", lower=False).split("'Café' costs 3.50€")
        ["'", 'Café', "'", 'costs', '3', '.', '50', '€']
    """

    tokens: str = "word"
    lower: bool = True
    key: str = field(default="data.text", compare=False)

    def __post_init__(self):
        if not isinstance(self.tokens, str) or self.tokens not in KINDS:
            raise NntrainError(f"tokens must be 'char' or 'word', got {short_repr(self.tokens)}", self.key)
        if not isinstance(self.lower, (bool, np.bool_)):
            raise NntrainError(f"lower must be true or false, got {short_repr(self.lower)}", self.key)
        object.__setattr__(self, "lower", bool(self.lower))

    def split(self, text: str) -> list[str]:
        """The tokens of one text, in order."""
        if not isinstance(text, str):
            raise NntrainError(f"a text must be a string, got {type(text).__name__} {short_repr(text)}", self.key)
        text = unicodedata.normalize("NFC", text.lower() if self.lower else text)
        return list(text) if self.tokens == "char" else _word_pattern().findall(text)

    def split_many(self, texts) -> list[list[str]]:
        return [self.split(t) for t in texts]

    def join(self, tokens) -> str:
        """Tokens back to text: char tokens as they are, word tokens with one space between (the spacing
        around punctuation is lost)."""
        return ("" if self.tokens == "char" else " ").join(tokens)


def _whole(value, name: str, least: int, key: str, most: int | None = None) -> int:
    """`value` as an int in least .. most (a bool is not a number here)."""
    try:
        number = None if isinstance(value, (bool, np.bool_)) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < least:
        raise NntrainError(f"{name} must be a whole number of at least {least}, got {short_repr(value)}", key)
    if most is not None and number > most:
        raise NntrainError(f"{name} must be at most {most:,}, got {number:,}", key)
    return number


class Vocabulary:
    """Tokens <-> ids: tokens[0] = '<pad>', tokens[1] = '<unk>', then the real tokens.

    Made by `build` (from token lists), `fit` (from texts) or `from_state` (from a checkpoint);
    `tokenizer` and `max_length` are what the run used, needed by `encode_texts` and `state`.
    """

    def __init__(self, tokens, tokenizer: Tokenizer | None = None, max_length: int | None = None, key: str = "data.text"):
        tokens = [str(t) for t in tokens]
        if tokens[:2] != [PAD, UNK]:
            raise NntrainError(f"a vocabulary starts with '{PAD}' and '{UNK}', got {short_repr(tokens[:2])}", key)
        if len(tokens) < 3:
            raise NntrainError("the vocabulary holds no real token", key)
        index = {t: i for i, t in enumerate(tokens[2:], 2)}
        if len(index) != len(tokens) - 2 or PAD in index or UNK in index:
            twice = next(t for t, n in Counter(tokens).items() if n > 1)
            raise NntrainError(f"the vocabulary holds the token {short_repr(twice)} twice", key)
        self.tokens, self._index, self.key = tokens, index, key
        self.tokenizer = tokenizer
        self.max_length = None if max_length is None else _whole(max_length, "max_length", 1, key, MAX_LENGTH)

    @classmethod
    def build(cls, token_lists, min_count: int = 1, max_size: int | None = None, tokenizer: Tokenizer | None = None,
              max_length: int | None = None, key: str = "data.text") -> "Vocabulary":
        """From the TRAINING split's token lists: tokens seen >= min_count times, by count descending then
        token ascending (code points), cut to max_size ids (the two specials included)."""
        min_count = _whole(min_count, "min_count", 1, key)
        max_size = None if max_size is None else _whole(max_size, "max_size (the two special tokens included)", 3, key)
        lists = token_lists if isinstance(token_lists, (list, tuple)) else list(token_lists)
        if not lists:
            raise NntrainError("there are no training texts to build the vocabulary from", key)
        counts = Counter(chain.from_iterable(lists))
        for t in [t for t in counts if t in (PAD, UNK) or t.endswith("\x00")]:
            del counts[t]
        if not counts:
            raise NntrainError(f"the {len(lists):,} training texts hold no tokens: the vocabulary would be empty", key)
        ranked = sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))
        kept = [t for t, n in ranked if n >= min_count]
        if not kept:
            top, n = ranked[0]
            raise NntrainError(
                f"no token occurs min_count: {min_count} times in the training texts (the most frequent,"
                f" {short_repr(top, 40)}, occurs {n} times): the vocabulary would hold no real token; lower min_count",
                key,
            )
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls([PAD, UNK, *kept], tokenizer, max_length, key)

    @classmethod
    def fit(cls, texts, tokenizer: Tokenizer, max_length: int, min_count: int = 1, max_size: int | None = None,
            key: str = "data.text") -> "Vocabulary":
        """`build` on the training texts, split by `tokenizer`."""
        return cls.build(tokenizer.split_many(texts), min_count, max_size, tokenizer, max_length, key)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self.tokens, self.tokenizer, self.max_length) == (other.tokens, other.tokenizer, other.max_length)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, {self.tokenizer}, max_length={self.max_length})"

    def id(self, token: str) -> int:
        """The token's id; 1 (`<unk>`) for a token not in the vocabulary."""
        return self._index.get(token, UNK_ID)

    def token(self, id: int) -> str:
        if not 0 <= id < len(self.tokens):
            raise NntrainError(f"id {id} is not in the vocabulary of {len(self.tokens)} tokens", self.key)
        return self.tokens[id]

    def _length(self, max_length) -> int:
        if max_length is None:
            if self.max_length is None:
                raise ValueError("no max_length: give one, or build the vocabulary with one")
            return self.max_length
        return _whole(max_length, "max_length", 1, self.key, MAX_LENGTH)

    def encode(self, tokens, max_length: int | None = None) -> tuple[np.ndarray, int]:
        """(ids (max_length,) int64, length): the first max_length tokens' ids, then 0s; [1] and 1 when empty."""
        n = self._length(max_length)
        ids = np.zeros(n, np.int64)
        kept = tokens[:n]
        if not len(kept):
            ids[0] = UNK_ID
            return ids, 1
        ids[: len(kept)] = [self._index.get(t, UNK_ID) for t in kept]
        return ids, len(kept)

    def encode_many(self, token_lists, max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N, max_length) int64, lengths (N,) int64): `encode` of each list, in one pass."""
        n = self._length(max_length)
        cut = [t[:n] for t in token_lists]
        lengths = np.fromiter(map(len, cut), np.int64, len(cut))
        flat = np.fromiter(map(self._index.get, chain.from_iterable(cut), repeat(UNK_ID)), np.int64, int(lengths.sum()))
        ids = np.zeros((len(cut), n), np.int64)
        # Row-major order of the mask is the order of `flat`: one scatter for all rows.
        ids[np.arange(n) < lengths[:, None]] = flat
        empty = lengths == 0
        ids[empty, 0] = UNK_ID
        lengths[empty] = 1
        return ids, lengths

    def encode_texts(self, texts, max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`encode_many` of the texts split by the vocabulary's tokenizer (what predict does with new text)."""
        if self.tokenizer is None:
            raise ValueError("this vocabulary has no tokenizer")
        return self.encode_many(self.tokenizer.split_many(texts), max_length)

    def decode(self, ids) -> list[str]:
        """The tokens of `ids` (a 1-D sequence of ints), padding (0) left out; `<unk>` stays."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise NntrainError(f"ids to decode must be a 1-D sequence of whole numbers, got shape {ids.shape} dtype {ids.dtype}", self.key)
        bad = (ids < 0) | (ids >= len(self.tokens))
        if bad.any():
            raise NntrainError(f"id {ids[bad][0]} is not in the vocabulary of {len(self.tokens)} tokens", self.key)
        tokens = self.tokens
        return [tokens[i] for i in ids.tolist() if i != PAD_ID]

    def state(self, prefix: str = "data.text") -> dict[str, np.ndarray]:
        """The plain arrays that `from_state` reads back (see the module docstring)."""
        if self.tokenizer is None or self.max_length is None:
            raise ValueError("a vocabulary is saved with its tokenizer and max_length")
        return {
            f"{prefix}.vocabulary": np.array(self.tokens, dtype=np.str_),
            f"{prefix}.tokens": np.array(self.tokenizer.tokens, dtype=np.str_),
            f"{prefix}.lower": np.array(self.tokenizer.lower),
            f"{prefix}.max_length": np.array(self.max_length, dtype=np.int64),
        }

    @classmethod
    def from_state(cls, arrays, prefix: str = "data.text", source: str = "the checkpoint", key: str = "data.text") -> "Vocabulary":
        """Back from `state`'s arrays (a dict or an NpzFile); NntrainError naming the member when one is
        missing or malformed. `source` names the file in messages, e.g. "'run/model.npz'"."""

        def member(name: str, kind: str, ndim: int, what: str) -> np.ndarray:
            k = f"{prefix}.{name}"
            if k not in arrays:
                raise NntrainError(f"{source} has no {k} ({what}): it is damaged, or was not written for a text model")
            a = arrays[k]
            if not isinstance(a, np.ndarray) or a.dtype.kind not in kind or a.ndim != ndim:
                shape, dtype = getattr(a, "shape", "?"), getattr(a, "dtype", type(a).__name__)
                raise NntrainError(f"{source}: {k} ({what}) must be {_DESCRIBE[kind, ndim]}, got shape {shape} dtype {dtype}")
            return a

        k = f"{prefix}.vocabulary"
        tokens = member("vocabulary", "U", 1, "the token of each id").tolist()
        if tokens[:2] != [PAD, UNK]:
            raise NntrainError(f"{source}: {k} must start with '{PAD}' (id 0) and '{UNK}' (id 1), got {short_repr(tokens[:2])}")
        if len(tokens) < 3:
            raise NntrainError(f"{source}: {k} holds no real token, only '{PAD}' and '{UNK}'")
        counts = Counter(tokens)
        twice = next((t for t in tokens if counts[t] > 1), None)
        if twice is not None:
            raise NntrainError(f"{source}: {k} holds the token {short_repr(twice, 40)} more than once")
        kind = str(member("tokens", "U", 0, "the tokenizer").item())
        if kind not in KINDS:
            raise NntrainError(f"{source}: {prefix}.tokens must be 'char' or 'word', got {short_repr(kind)}")
        lower = bool(member("lower", "b", 0, "whether texts are lower-cased").item())
        length = member("max_length", "iu", 0, "ids per text").item()
        if not 1 <= length <= MAX_LENGTH:
            raise NntrainError(f"{source}: {prefix}.max_length is {length}; it must be 1 to {MAX_LENGTH:,}")
        return cls(tokens, Tokenizer(kind, lower, key), int(length), key)


_DESCRIBE = {("U", 1): "a 1-D text array", ("U", 0): "a text scalar", ("b", 0): "a boolean scalar", ("iu", 0): "an integer scalar"}


def members(prefix: str = "data.text", required: bool = True) -> dict[str, Member]:
    """`state`'s members as an npzfile.check_members spec (for a checkpoint's list of members)."""
    return {
        f"{prefix}.vocabulary": Member("U", (None,), required=required),
        f"{prefix}.tokens": Member("U", (), required=required),
        f"{prefix}.lower": Member("b", (), required=required),
        f"{prefix}.max_length": Member("iu", (), required=required, values="positive"),
    }


TEXT_SUFFIXES = (".txt",)


@dataclass(frozen=True)
class TextSource:
    """How a plain text file becomes a language model's data (the config's data.text and data.split)."""

    tokenizer: Tokenizer
    steps: int
    val: float
    test: float
    min_count: int = 1
    max_size: int | None = None
    column: str | None = None  # a table's text column (a classifier), instead of a text file


def read_text_file(path, source: TextSource, key: str = "data.dataset"):
    """`language_model_windows` of a UTF-8 text file; NntrainError naming the file when it cannot be read as one."""
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": the text as it is, "\r\n" included
            text = f.read()
    except UnicodeDecodeError as e:
        raise NntrainError(f"'{path}' is not UTF-8 text (byte {e.start}: {e.reason})", key) from None
    except OSError as e:
        raise NntrainError(f"'{path}' cannot be read: {e.strerror or e}", key) from None
    return language_model_windows(text, source.tokenizer, source.steps, source.val, source.test, source.min_count, source.max_size)


def language_model_windows(text: str, tokenizer: Tokenizer, steps: int, val: float, test: float, min_count: int = 1,
                           max_size: int | None = None, key: str = "data.text"):
    """A text cut for a language model: (X ids (rows, steps), y next ids (rows, steps), parts, vocabulary).

    The tokens are cut into three contiguous parts, training first, then the last `val` and
    `test` fractions (windows drawn from the whole text would put overlapping text in training
    and validation); the vocabulary is built on the training part alone. Each part gives its
    non-overlapping windows of `steps` tokens, each with its targets: the same window moved on
    by one token (y[i, t] is the token after X[i, t]). `parts` holds the row indices of each
    part, in order. NntrainError when a part is too short for one window.
    """
    tokens = tokenizer.split(text)
    bounds = [0, round(len(tokens) * (1 - val - test)), round(len(tokens) * (1 - test)), len(tokens)]
    vocabulary = Vocabulary.build([tokens[: bounds[1]]], min_count, max_size, tokenizer, steps, key)
    ids = np.fromiter(map(vocabulary._index.get, tokens, repeat(UNK_ID)), np.int64, len(tokens))
    inputs, targets, parts, start = [], [], {}, 0
    for name, low, high in zip(("train", "val", "test"), bounds, bounds[1:]):
        part = ids[low:high]
        rows = max(0, (len(part) - 1) // steps)
        if rows == 0 and (name == "train" or high > low):
            fix, where = ("lower data.text.length", key) if name == "train" else (f"raise data.split.{name} (or set it to 0)", f"data.split.{name}")
            raise NntrainError(
                f"the {name} part of the text has {len(part)} tokens, too few for one sequence of {steps} steps and its"
                f" next token; {fix}",
                where,
            )
        inputs.append(part[: rows * steps].reshape(rows, steps))
        targets.append(part[1 : rows * steps + 1].reshape(rows, steps))
        parts[name] = np.arange(start, start + rows)
        start += rows
    return np.concatenate(inputs).astype(np.float64), np.concatenate(targets), parts, vocabulary
