"""nntrain.safe_yaml: hostile YAML is refused quickly, with a short message, before it is built."""

from __future__ import annotations

import time

import pytest

from nntrain import safe_yaml
from nntrain.errors import NntrainError


def refused(text: str) -> str:
    with pytest.raises(NntrainError) as info:
        safe_yaml.parse(text, "'c.yaml'")
    message = str(info.value)
    assert message.startswith("'c.yaml'") and len(message) < 1000
    return message


def billion_laughs(levels: int = 9, under: str = "train:\n  metrics: ") -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n{under}*a{levels - 1}\n"


def test_plain_config_parses_as_before():
    value = safe_yaml.parse("lr: 1e-3\nlayers: [{linear: 3}, relu]\nseed: 7\nw: {0: 2.0}\n")
    assert value == {"lr": 0.001, "layers": [{"linear": 3}, "relu"], "seed": 7, "w": {0: 2.0}}


def test_alias_bomb_is_refused_fast_without_expanding():
    started = time.perf_counter()
    assert "more than 100,000 values" in refused(billion_laughs())
    assert time.perf_counter() - started < 2.0  # 9^9 values if expanded; counted, never built


def test_a_few_aliases_are_fine():
    assert safe_yaml.parse("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "a: " + "{b: " * 5000 + "1" + "}" * 5000])
def test_deep_nesting_is_refused_before_the_parser_recurses(text):
    # 100,000 levels crash libyaml's composer (a segfault), 1,000 exhaust Python's recursion limit.
    assert f"nested more than {safe_yaml.MAX_DEPTH} levels" in refused(text)


def test_nesting_up_to_the_limit_is_accepted():
    depth = safe_yaml.MAX_DEPTH
    assert safe_yaml.parse("[" * depth + "]" * depth) is not None


def test_large_text_is_refused_before_parsing():
    started = time.perf_counter()
    assert "limit is 1,048,576" in refused("k: v\n" * 2_000_000)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("number", ["18446744073709551616", "-9223372036854775809", "9" * 5000])
def test_integers_beyond_64_bits_are_refused(number):
    message = refused(f"folds: {number}\n")
    assert "does not fit in 64 bits" in message


def test_64_bit_integers_are_accepted():
    assert safe_yaml.parse("a: 9223372036854775807\nb: -9223372036854775808") == {"a": 2**63 - 1, "b": -(2**63)}


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "? {a: 1}\n: 2\n"])
def test_a_key_must_be_a_plain_value(text):
    assert "a key must be a plain value" in refused(text)


def test_a_key_given_twice_is_refused():
    assert "appears twice" in refused("a: 1\nb: 2\na: 3\n")


def test_a_lone_surrogate_is_refused():
    # What Python makes of an argv byte that is not UTF-8 (--set name=$'\xff').
    assert "not valid UTF-8" in refused("name: \udcff")
    assert "not valid YAML" in refused('name: "\\ud800"')  # an escape for half a character


def test_several_documents_are_refused():
    assert "not valid YAML" in refused("a: 1\n---\nb: 2\n")


def test_parse_value_keeps_text_that_is_not_yaml_but_refuses_hostile_values():
    assert safe_yaml.parse_value("a: b: c", "--set x: the value") == "a: b: c"
    with pytest.raises(NntrainError, match="--set x: the value is nested"):
        safe_yaml.parse_value("[" * 1000, "--set x: the value")


def test_read_checks_size_encoding_and_existence(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"k: v\n" * 300_000)
    with pytest.raises(NntrainError, match="larger than 1,048,576 bytes"):
        safe_yaml.read(big, "config file")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(NntrainError, match="not UTF-8 text"):
        safe_yaml.read(latin, "config file")
    with pytest.raises(NntrainError, match="does not exist"):
        safe_yaml.read(tmp_path / "missing.yaml", "config file")
    with pytest.raises(NntrainError, match="is a directory"):
        safe_yaml.read(tmp_path, "config file")
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfseed: 3\r\n")
    assert safe_yaml.read(bom) == {"seed": 3}


@pytest.fixture(params=["libyaml", "python"])
def either_loader(request, monkeypatch):
    """The same checks with PyYAML's pure-Python loader, which nntrain uses where PyYAML lacks libyaml."""
    if request.param == "python":
        import yaml

        monkeypatch.setattr(safe_yaml, "_Loader", safe_yaml.loader(yaml.SafeLoader))
    return request.param


@pytest.mark.parametrize(
    "text, needle",
    [
        ('name: "\\ud800"', "invalid character"),
        ("[" * 3000 + "]" * 3000, "nested more than"),
        ("? [a, b]\n: 1\n", "plain value"),
        ("a: 99999999999999999999\n", "64 bits"),
        ("a: 1\na: 2\n", "appears twice"),
    ],
)
def test_both_loaders_refuse_the_same(either_loader, text, needle):
    message = refused(text)
    assert needle in message or (either_loader == "libyaml" and "not valid YAML" in message)
    assert safe_yaml.parse("lr: 1e-3\nn: 3\n") == {"lr": 0.001, "n": 3}
