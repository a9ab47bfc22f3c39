"""The tokenizer and the vocabulary of text inputs (nntrain/data/text.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from nntrain.data.text import PAD, UNK, UNK_ID, Tokenizer, Vocabulary, members
from nntrain.errors import NntrainError
from nntrain.npzfile import check_members, load_npz


def vocab_of(*texts, tokens="word", max_length=8, **kw) -> Vocabulary:
    tokenizer = Tokenizer(tokens)
    return Vocabulary.build(tokenizer.split_many(texts), tokenizer=tokenizer, max_length=max_length, **kw)


# --- tokenizer -------------------------------------------------------------------------------------


def test_the_documented_examples():
    assert Tokenizer("word").split("Don't stop, O'Neil!") == ["don't", "stop", ",", "o'neil", "!"]
    assert Tokenizer("word", lower=False).split("'Café' costs 3.50€") == ["'", "Café", "'", "costs", "3", ".", "50", "€"]


def test_char_keeps_every_character_and_whitespace():
    assert Tokenizer("char").split("Ab c\n\td") == ["a", "b", " ", "c", "\n", "\t", "d"]
    assert Tokenizer("char", lower=False).split("Ab  C") == ["A", "b", " ", " ", "C"]
    assert Tokenizer("char").split("") == []
    assert Tokenizer("char").split("Ünï😀") == ["ü", "n", "ï", "😀"]


def test_word_punctuation_apostrophes_and_whitespace():
    split = Tokenizer("word").split
    assert split("  hello,\n\tworld...  ") == ["hello", ",", "world", ".", ".", "."]
    assert split("dogs' toys 'quoted' rock'n'roll don\u2019t") == ["dogs", "'", "toys", "'", "quoted", "'", "rock'n'roll", "don\u2019t"]
    assert split("snake_case x2 3.5") == ["snake_case", "x2", "3", ".", "5"]
    assert split("a-b (c)") == ["a", "-", "b", "(", "c", ")"]
    assert split("") == [] and split(" \n ") == []


def test_word_is_unicode_aware():
    split = Tokenizer("word").split
    assert split("Grüße, ÉCOLE naïve Москва 東京") == ["grüße", ",", "école", "naïve", "москва", "東京"]
    assert split("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # vowel signs and the virama (combining marks) stay inside the word
    decomposed = "cafe\u0301"  # e + combining acute: the same word as the composed form
    assert split(decomposed) == split("café") == ["café"]
    assert Tokenizer("char").split(decomposed) == ["c", "a", "f", "é"]


def test_lower_on_and_off():
    assert Tokenizer("word").split("The CAT") == ["the", "cat"]
    assert Tokenizer("word", lower=False).split("The CAT") == ["The", "CAT"]


def test_tokenizer_guards():
    with pytest.raises(NntrainError, match="data.text.tokens: tokens must be 'char' or 'word', got 'bpe'"):
        Tokenizer("bpe", key="data.text.tokens")
    with pytest.raises(NntrainError, match="lower must be true or false"):
        Tokenizer("word", lower="yes")
    with pytest.raises(NntrainError, match="a text must be a string, got NoneType"):
        Tokenizer("word").split(None)


def test_join():
    assert Tokenizer("char").join(Tokenizer("char").split("a b\n")) == "a b\n"
    assert Tokenizer("word").join(["hi", ",", "you"]) == "hi , you"


# --- vocabulary ------------------------------------------------------------------------------------


def test_ids_order_by_count_then_token():
    v = vocab_of("b a c a", "c d a")
    # a: 3, c: 2, then b and d (1 each) in code-point order
    assert v.tokens == [PAD, UNK, "a", "c", "b", "d"]
    assert len(v) == 6
    assert [v.id(t) for t in "acbd"] == [2, 3, 4, 5] and v.token(0) == PAD and v.token(1) == UNK and v.token(4) == "b"


def test_order_does_not_depend_on_input_order():
    lists = [["z", "y"], ["x"], ["y", "x", "z"], ["w"], ["B", "a"]]
    first = Vocabulary.build(lists).tokens
    assert first == [PAD, UNK, "x", "y", "z", "B", "a", "w"]  # equal counts: code points ("B" < "a")
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(lists))
        shuffled = [list(np.random.default_rng(seed).permutation(lists[i])) for i in order]
        assert Vocabulary.build(shuffled).tokens == first


def test_min_count_and_max_size():
    lists = [["a", "a", "a", "b", "b", "c"]]
    assert Vocabulary.build(lists, min_count=2).tokens == [PAD, UNK, "a", "b"]
    assert Vocabulary.build(lists, max_size=3).tokens == [PAD, UNK, "a"]  # max_size counts the specials
    assert Vocabulary.build(lists, max_size=4, min_count=1).tokens == [PAD, UNK, "a", "b"]
    assert Vocabulary.build(lists, max_size=100).tokens == [PAD, UNK, "a", "b", "c"]


def test_out_of_vocabulary_tokens_are_unk():
    v = vocab_of("the cat sat", max_length=5)
    ids, length = v.encode(["the", "dog", "sat"])
    assert ids.tolist() == [v.id("the"), UNK_ID, v.id("sat"), 0, 0] and length == 3
    assert v.id("dog") == UNK_ID


def test_special_spellings_are_out_of_vocabulary():
    v = Vocabulary.build([["<pad>", "<unk>", "x", "x\x00"]], max_length=4)
    assert v.tokens == [PAD, UNK, "x"]
    assert v.id("<pad>") == UNK_ID and v.id("<unk>") == UNK_ID and v.id("x\x00") == UNK_ID
    assert v.encode(["<pad>", "x"])[0].tolist() == [UNK_ID, 2, 0, 0]


def test_truncation_keeps_the_first_tokens_and_padding_is_zero():
    v = vocab_of("a b c d e f")
    ids, length = v.encode(list("abcdef"), max_length=3)
    assert ids.dtype == np.int64 and ids.shape == (3,) and length == 3
    assert v.decode(ids) == ["a", "b", "c"]
    ids, length = v.encode(["a"], max_length=4)
    assert ids.tolist() == [v.id("a"), 0, 0, 0] and length == 1
    assert v.encode(list("abcdef"))[0].shape == (8,)  # the vocabulary's own max_length


def test_empty_text_is_one_unk_step():
    v = vocab_of("a b")
    ids, length = v.encode([], max_length=3)
    assert ids.tolist() == [UNK_ID, 0, 0] and length == 1
    ids, lengths = v.encode_many([[], ["a"], []], max_length=2)
    assert ids.tolist() == [[UNK_ID, 0], [2, 0], [UNK_ID, 0]] and lengths.tolist() == [1, 1, 1]
    ids, lengths = v.encode_many([], max_length=2)
    assert ids.shape == (0, 2) and lengths.shape == (0,) and ids.dtype == lengths.dtype == np.int64


def test_encode_many_equals_a_loop_of_encode():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    lists = [list(rng.choice(words, size=int(rng.integers(0, 12)))) for _ in range(300)]
    v = Vocabulary.build(lists[:200], max_size=20)  # so that the rest hold unknown tokens
    for max_length in (1, 5, 12, 20):
        ids, lengths = v.encode_many(lists, max_length)
        assert ids.shape == (300, max_length) and ids.dtype == np.int64 and lengths.dtype == np.int64
        for row, tokens in enumerate(lists):
            one, length = v.encode(tokens, max_length)
            assert ids[row].tolist() == one.tolist() and lengths[row] == length
    assert (lengths >= 1).all() and (ids >= 0).all() and (ids < len(v)).all()


def test_decode_encode_round_trip():
    tokenizer = Tokenizer("char", lower=False)
    text = "Hello, world!\nSecond line\twith tabs."
    v = Vocabulary.fit([text], tokenizer, max_length=64)
    ids, length = v.encode(tokenizer.split(text))
    assert tokenizer.join(v.decode(ids)) == text
    assert tokenizer.join(v.decode(ids[:length])) == text
    ids, lengths = v.encode_texts([text, "Hq"])
    assert tokenizer.join(v.decode(ids[1])) == "H" + UNK  # "q" is not in the training text
    assert v.decode([1, 0, 2]) == [UNK, v.token(2)]


def test_decode_and_token_refuse_ids_outside_the_vocabulary():
    v = vocab_of("a b")
    with pytest.raises(NntrainError, match="id 4 is not in the vocabulary of 4 tokens"):
        v.decode([2, 4])
    with pytest.raises(NntrainError, match="id -1 is not"):
        v.decode(np.array([-1]))
    with pytest.raises(NntrainError, match="1-D sequence of whole numbers"):
        v.decode([[1]])
    with pytest.raises(NntrainError, match="id 9 is not"):
        v.token(9)
    assert v.decode([]) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(max_size=2), "max_size .* must be a whole number of at least 3, got 2"),
        (dict(max_size=2.5), "max_size .* got 2.5"),
        (dict(min_count=0), "min_count must be a whole number of at least 1, got 0"),
        (dict(min_count=True), "min_count must be .* got True"),
        (dict(max_length=0), "max_length must be a whole number of at least 1, got 0"),
        (dict(max_length=2**21), "max_length must be at most 1,048,576, got 2,097,152"),
        (dict(min_count=5), r"no token occurs min_count: 5 times .*the most frequent, 'a', occurs 2 times"),
    ],
)
def test_build_guards(args, message):
    with pytest.raises(NntrainError, match=f"^data.text.review: {message}") as e:
        Vocabulary.build([["a", "a", "b"]], key="data.text.review", **args)
    assert e.value.key == "data.text.review"


def test_no_training_texts_or_no_tokens():
    with pytest.raises(NntrainError, match="data.text: there are no training texts"):
        Vocabulary.build([])
    with pytest.raises(NntrainError, match="the 2 training texts hold no tokens"):
        Vocabulary.build([[], []])
    with pytest.raises(NntrainError, match="hold no tokens"):
        Vocabulary.fit(["  ", "\n"], Tokenizer("word"), 4)
    with pytest.raises(NntrainError, match="max_length must be"):
        vocab_of("a").encode(["a"], max_length=0)


# --- saved state -----------------------------------------------------------------------------------


def saved(tmp_path, arrays: dict):
    np.savez(tmp_path / "s.npz", **arrays)
    return np.load(tmp_path / "s.npz", allow_pickle=False)


def test_state_round_trip(tmp_path):
    for tokens, lower in (("word", True), ("char", False)):
        v = Vocabulary.fit(["Ünïcode text, with: punctuation!", "Zweite Zeile\n"], Tokenizer(tokens, lower), max_length=7)
        state = v.state("data.text.body")
        assert sorted(state) == ["data.text.body.lower", "data.text.body.max_length", "data.text.body.tokens", "data.text.body.vocabulary"]
        assert all(a.dtype.kind in "biU" for a in state.values())
        with saved(tmp_path, state) as arrays:
            back = Vocabulary.from_state(arrays, "data.text.body")
        assert back == v and back.tokens == v.tokens and back.tokenizer == Tokenizer(tokens, lower) and back.max_length == 7
        texts = ["new TEXT, unseen words", ""]
        assert all((a == b).all() for a, b in zip(back.encode_texts(texts), v.encode_texts(texts)))
        check_members(tmp_path / "s.npz", load_npz(tmp_path / "s.npz"), members("data.text.body"), closed=True)


def test_state_needs_tokenizer_and_max_length():
    with pytest.raises(ValueError):
        Vocabulary.build([["a"]]).state()


def good_state() -> dict:
    return Vocabulary.fit(["a b c"], Tokenizer("word"), 5).state()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(vocabulary=None), "the checkpoint has no data.text.vocabulary"),
        (dict(tokens=None), "the checkpoint has no data.text.tokens"),
        (dict(lower=None), "the checkpoint has no data.text.lower"),
        (dict(max_length=None), "the checkpoint has no data.text.max_length"),
        (dict(vocabulary=np.arange(5)), "data.text.vocabulary .* must be a 1-D text array, got shape \\(5,\\) dtype int64"),
        (dict(vocabulary=np.array([[PAD, UNK, "a"]])), "data.text.vocabulary .* must be a 1-D text array, got shape \\(1, 3\\)"),
        (dict(max_length=np.array(5.0)), "data.text.max_length .* must be an integer scalar, got shape \\(\\) dtype float64"),
        (dict(max_length=np.array([5])), "data.text.max_length .* must be an integer scalar, got shape \\(1,\\)"),
        (dict(max_length=np.array(0)), "data.text.max_length is 0; it must be 1 to 1,048,576"),
        (dict(max_length=np.array(2**40)), "data.text.max_length is 1099511627776; it must be 1 to"),
        (dict(lower=np.array(1)), "data.text.lower .* must be a boolean scalar"),
        (dict(tokens=np.array("bpe")), "data.text.tokens must be 'char' or 'word', got 'bpe'"),
        (dict(tokens=np.array(["word"])), "data.text.tokens .* must be a text scalar"),
        (dict(vocabulary=np.array([UNK, PAD, "a"])), "data.text.vocabulary must start with '<pad>' \\(id 0\\) and '<unk>' \\(id 1\\)"),
        (dict(vocabulary=np.array(["a", PAD, UNK])), "must start with '<pad>'"),
        (dict(vocabulary=np.array([PAD, UNK])), "data.text.vocabulary holds no real token"),
        (dict(vocabulary=np.array([PAD, UNK, "a", PAD])), "holds the token '<pad>' more than once"),
        (dict(vocabulary=np.array([PAD, UNK, "a", "b", "a"])), "holds the token 'a' more than once"),
    ],
)
def test_from_state_refuses_damaged_state(tmp_path, change, message):
    state = good_state()
    for name, value in change.items():
        if value is None:
            del state[f"data.text.{name}"]
        else:
            state[f"data.text.{name}"] = value
    with saved(tmp_path, state) as arrays:
        with pytest.raises(NntrainError, match=message) as e:
            Vocabulary.from_state(arrays)
    assert e.value.exit_code == 2


def test_from_state_names_the_file_and_prefix():
    state = good_state()
    with pytest.raises(NntrainError, match="^'run/model.npz' has no data.text.other.vocabulary"):
        Vocabulary.from_state(state, "data.text.other", source="'run/model.npz'")
    assert Vocabulary.from_state(state).tokens == [PAD, UNK, "a", "b", "c"]


def test_encode_many_is_fast():
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(2000)])
    lists = [words[rng.integers(0, 2000, size=int(n))].tolist() for n in rng.integers(0, 15, size=20_000)]
    v = Vocabulary.build(lists, max_size=1000)
    start = time.perf_counter()
    ids, lengths = v.encode_many(lists, 10)
    assert time.perf_counter() - start < 1.0  # ~0.03 s here; 100k texts take ~0.2 s
    assert ids.shape == (20_000, 10)


# --- a text cut for a language model -----------------------------------------------------------


def test_language_model_windows_are_contiguous_parts_with_the_next_token_as_target():
    from nntrain.data.text import language_model_windows

    text = "abcdefghij" * 10 + "XYZ"  # 103 characters; X, Y, Z only in the last part
    X, y, parts, vocabulary = language_model_windows(text, Tokenizer("char", lower=False), 5, val=0.1, test=0.1)
    # train: the first 82 tokens (round(103 * 0.8)), val up to round(103 * 0.9) = 93, test the last 10.
    assert [len(parts[k]) for k in ("train", "val", "test")] == [(82 - 1) // 5, (11 - 1) // 5, (10 - 1) // 5]
    assert np.concatenate([parts["train"], parts["val"], parts["test"]]).tolist() == list(range(len(X)))
    assert X.shape == y.shape == (len(X), 5) and X.dtype == np.float64 and y.dtype == np.int64
    decoded = ["".join(vocabulary.decode(row.astype(np.int64))) for row in X]
    assert decoded[0] == "abcde" and decoded[1] == "fghij"  # non-overlapping windows from the start
    assert "".join(vocabulary.decode(y[0])) == "bcdef"  # each target is the next token
    assert "X" not in vocabulary.tokens and len(vocabulary) == 2 + 10  # built on the training part only
    assert vocabulary.id("X") == UNK_ID
    with pytest.raises(NntrainError, match=r"the val part of the text has 10 tokens, too few for one sequence of 20"):  # 103 - 93
        language_model_windows(text, Tokenizer("char"), 20, val=0.1, test=0.0)


def test_a_text_file_must_be_utf8(tmp_path):
    from nntrain.data.text import TextSource, read_text_file

    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 20)
    with pytest.raises(NntrainError, match="is not UTF-8 text"):
        read_text_file(path, TextSource(Tokenizer("char"), 4, 0.1, 0.0))
