"""cross_entropy over the steps of sequences: z (N, T, K), t (N, T), padded steps after `lengths`.

The torch references live in tests/fixtures/torch_step_losses.npz, written by
tests/fixtures/make_torch_step_loss_fixtures.py (torch is needed only to regenerate them):
torch.nn.CrossEntropyLoss on the (N T, K) rows with the padded steps' targets set to
ignore_index, with and without weight=. Then: the (N, K) path is unchanged (a plain numpy
formula, and (N, 1, K) giving the same bits), padded steps count for nothing, float32 stays
float32, gradients through a recurrent network, the ln K of a uniform prediction, predict /
decide / encode on steps, batch_weight and Metrics over batches of different real steps,
reused arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.train.metrics import Metrics

FIXTURES = np.load(Path(__file__).parent / "fixtures" / "torch_step_losses.npz", allow_pickle=False)
CASES = [str(c) for c in FIXTURES["cases"]]


def _fixture(case):
    def get(key):
        return FIXTURES[f"{case}.{key}"] if f"{case}.{key}" in FIXTURES.files else None

    return get("z"), get("t"), get("lengths"), get("weight"), float(get("loss")), get("grad")


def _loss(weight=None, lengths=None):
    """A cross_entropy with per-class weights set through the config's mapping and `lengths` as a network sets them."""
    if weight is None:
        loss = LOSSES["cross_entropy"]()
    else:
        loss = LOSSES["cross_entropy"](class_weights={str(c): float(w) for c, w in enumerate(weight)})
        loss.set_class_weights([str(c) for c in range(len(weight))], np.ones(len(weight), dtype=np.int64))
        assert_array_equal(loss.weights, weight)
    loss.lengths = lengths
    return loss


def _padded(lengths, steps):
    return np.arange(steps) >= np.asarray(lengths)[:, None]


def _reference(z, t, weight=None):
    """(N, K) cross-entropy and its gradient in plain numpy, straight from the formula."""
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    per = lse - z[np.arange(len(t)), t]
    w = np.ones(len(t)) if weight is None else np.asarray(weight)[t]
    soft = np.exp(z - lse[:, None])
    soft[np.arange(len(t)), t] -= 1
    return np.sum(w * per) / np.sum(w), soft * (w / np.sum(w))[:, None]


# ---------------------------------------------------------------- torch parity


def test_fixture_covers_the_cases():
    assert len(CASES) >= 8
    patterns = {case: _fixture(case) for case in CASES}
    assert any((z.shape[1] == lengths).all() for z, _, lengths, *_ in patterns.values())  # all whole
    assert any((lengths == 1).any() and (lengths > 1).any() for _, _, lengths, *_ in patterns.values())  # mixed, a 1
    assert any(weight is not None for _, _, _, weight, *_ in patterns.values())
    assert any(z.shape[1] == 1 for z, *_ in patterns.values())


@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case):
    z, t, lengths, weight, torch_loss, torch_grad = _fixture(case)
    whole = (lengths == z.shape[1]).all()
    for given in [None, lengths] if whole else [lengths]:
        loss = _loss(weight, given)
        target = loss.encode(t, z.shape[2], np.float64)
        assert target.dtype == np.int64 and target.shape == t.shape
        value = loss.forward(z.copy(), target)
        grad = loss.backward()
        assert grad.shape == z.shape and grad.dtype == np.float64
        assert abs(value - torch_loss) <= 1e-12 * max(1.0, abs(torch_loss)), (value, torch_loss)
        assert np.max(np.abs(grad - torch_grad)) <= 1e-12
        assert_array_equal(grad[_padded(lengths, z.shape[1])], 0)
        real = int(lengths.sum())
        expected = real if weight is None else float(np.sum(weight[t[~_padded(lengths, z.shape[1])]]))
        assert loss.batch_weight == pytest.approx(expected, rel=1e-15)


def test_torch_largest_differences():
    """The largest absolute differences over all cases stay far inside 1e-12 (printed with -s)."""
    worst_loss = worst_grad = 0.0
    for case in CASES:
        z, t, lengths, weight, torch_loss, torch_grad = _fixture(case)
        loss = _loss(weight, lengths)
        worst_loss = max(worst_loss, abs(loss.forward(z.copy(), t) - torch_loss))
        worst_grad = max(worst_grad, float(np.max(np.abs(loss.backward() - torch_grad))))
    print(f"largest difference against torch: loss {worst_loss:.3g}, gradient {worst_grad:.3g}")
    assert worst_loss <= 1e-12 and worst_grad <= 1e-12


# ---------------------------------------------------------------- the (N, K) path is unchanged


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (128, 10), (33, 17)])
def test_rows_match_the_formula(shape, weighted):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    z = rng.standard_normal(shape) * 3
    t = rng.integers(0, shape[1], shape[0])
    weight = rng.uniform(0.5, 2.0, shape[1]) if weighted else None
    loss = _loss(weight)
    value, grad = loss.forward(z.copy(), t), loss.backward()
    expected, expected_grad = _reference(z, t, weight)
    assert abs(value - expected) <= 1e-15 * max(1.0, abs(expected))
    assert_allclose(grad, expected_grad, rtol=0, atol=1e-15)
    assert loss.batch_weight == (None if weight is None else pytest.approx(np.sum(weight[t]), rel=1e-15))


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_and_one_step_sequences_give_the_same_bits(dtype, weighted):
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((128, 10)) * 2).astype(dtype)
    t = rng.integers(0, 10, 128)
    weight = rng.uniform(0.5, 2.0, 10) if weighted else None
    rows = _loss(weight)
    value, grad = rows.forward(z.copy(), t), rows.backward().copy()
    for lengths in (None, np.ones(128, dtype=np.int64)):  # whole, and one step given as lengths
        steps = _loss(weight, lengths)
        value3 = steps.forward(z.reshape(128, 1, 10).copy(), t.reshape(128, 1))
        grad3 = steps.backward()
        assert value3 == value
        assert grad3.shape == (128, 1, 10) and grad3.dtype == dtype
        assert_array_equal(grad3.reshape(128, 10), grad)
        assert steps.batch_weight == (128.0 if weight is None else rows.batch_weight)


def test_real_steps_give_the_bits_of_their_rows():
    """With lengths, loss and gradient are exactly those of the (N, K) path on the real steps alone."""
    rng = np.random.default_rng(4)
    lengths = np.array([5, 1, 3, 5, 2])
    z = rng.standard_normal((5, 5, 6))
    t = rng.integers(0, 6, (5, 5))
    real = ~_padded(lengths, 5)
    for weight in (None, rng.uniform(0.5, 2.0, 6)):
        rows = _loss(weight)
        value, grad = rows.forward(z[real].copy(), t[real]), rows.backward().copy()
        steps = _loss(weight, lengths)
        assert steps.forward(z.copy(), t) == value
        grad3 = steps.backward()
        assert_array_equal(grad3[real], grad)
        assert_array_equal(grad3[~real], 0)


# ---------------------------------------------------------------- padded steps


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_padded_steps_change_nothing(dtype):
    rng = np.random.default_rng(5)
    lengths = np.array([4, 1, 2])
    pad = _padded(lengths, 4)
    z = (rng.standard_normal((3, 4, 5)) * 2).astype(dtype)
    t = rng.integers(0, 5, (3, 4))
    for weight in (None, np.array([0.5, 1.0, 2.0, 3.0, 0.25])):
        loss = _loss(weight, lengths)
        value, grad = loss.forward(z.copy(), t), loss.backward().copy()
        assert grad.dtype == dtype and (grad[pad] == 0).all() and not np.signbit(grad[pad]).any()
        for fill_z, fill_t in [(0.0, -1), (1e30, 10**12), (np.inf, -100), (np.nan, 5), (-np.inf, 0)]:
            z2, t2 = z.copy(), t.copy()
            z2[pad], t2[pad] = fill_z, fill_t
            again = _loss(weight, lengths)
            assert again.forward(z2, t2) == value
            assert_array_equal(again.backward(), grad)
        random = z.copy()
        random[pad] = rng.standard_normal((int(pad.sum()), 5)) * 50
        again = _loss(weight, lengths)
        assert again.forward(random, np.where(pad, rng.integers(-5, 5, t.shape), t)) == value
        assert_array_equal(again.backward(), grad)


def test_without_lengths_every_step_counts():
    rng = np.random.default_rng(6)
    z, t = rng.standard_normal((3, 4, 5)), rng.integers(0, 5, (3, 4))
    loss = _loss()
    value = loss.forward(z.copy(), t)
    expected, expected_grad = _reference(z.reshape(12, 5), t.reshape(12))
    assert value == pytest.approx(expected, rel=1e-15)
    assert_allclose(loss.backward(), expected_grad.reshape(3, 4, 5), rtol=0, atol=1e-16)
    assert loss.batch_weight == 12.0


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_float32_in_float32_out(weighted):
    rng = np.random.default_rng(7)
    lengths = np.array([3, 6, 1, 6])
    z = rng.standard_normal((4, 6, 8)).astype(np.float32)
    t = rng.integers(0, 8, (4, 6))
    weight = rng.uniform(0.5, 2.0, 8) if weighted else None
    loss32, loss64 = _loss(weight, lengths), _loss(weight, lengths)
    value32 = loss32.forward(z.copy(), t)
    grad32 = loss32.backward()
    assert isinstance(value32, float) and grad32.dtype == np.float32 and grad32.shape == z.shape
    if weighted:
        assert loss32.coef.dtype == np.float32
    value64 = loss64.forward(z.astype(np.float64), t)
    assert value32 == pytest.approx(value64, rel=1e-6)
    assert_allclose(grad32, loss64.backward(), rtol=0, atol=1e-7)
    assert loss32.predict(z).dtype == np.float32


def test_zero_weight_steps():
    """Real steps whose class weighs 0 add nothing; when every real step weighs 0, loss and gradient are 0."""
    loss = _loss(np.array([0.0, 1.0, 2.0]), np.array([2, 1]))
    z = np.random.default_rng(8).standard_normal((2, 2, 3))
    assert loss.forward(z.copy(), np.array([[0, 0], [0, 7]])) == 0.0
    assert_array_equal(loss.backward(), 0)
    assert loss.batch_weight == 0.0


def test_shape_errors():
    loss = _loss()
    with pytest.raises(ValueError, match="targets of shape"):
        loss.forward(np.zeros((2, 3, 4)), np.zeros(2, dtype=np.int64))
    loss.lengths = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="lengths must have shape"):
        loss.forward(np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="batch, steps, classes"):
        loss.forward(np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 4), dtype=np.int64))


# ---------------------------------------------------------------- values, predict, decide, encode


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [2, 10, 1000])
def test_uniform_prediction_is_ln_k(k, dtype):
    """The language-model check at initialisation: zero logits cost ln K per step, padded or not."""
    t = np.random.default_rng(k).integers(0, k, (3, 5))
    for lengths in (None, np.array([5, 2, 1])):
        loss = _loss(None, lengths)
        value = loss.forward(np.zeros((3, 5, k), dtype=dtype), t)
        assert value == pytest.approx(np.log(k), rel=1e-15 if dtype == np.float64 else 1e-6)
        grad = loss.backward()
        real = 15 if lengths is None else 8
        expected = np.full((3, 5, k), 1 / k) - np.eye(k)[t]
        expected /= real
        if lengths is not None:
            expected[_padded(lengths, 5)] = 0
        assert_allclose(grad, expected, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-9)


def test_predict_decide_encode_on_steps():
    loss = _loss()
    rng = np.random.default_rng(9)
    z = rng.standard_normal((4, 3, 5)) * 4
    p = loss.predict(z)
    assert p.shape == (4, 3, 5)
    assert_allclose(p.sum(axis=-1), 1, rtol=1e-15)
    assert_allclose(p, np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True), rtol=1e-14)
    assert_array_equal(loss.decide(z), z.argmax(axis=2))
    assert loss.decide(z).shape == (4, 3)
    y = rng.integers(0, 5, (4, 3)).astype(np.int32)
    encoded = loss.encode(y, 5, np.float32)
    assert encoded.dtype == np.int64 and encoded.shape == (4, 3)
    assert_array_equal(encoded, y)
    # the (N, K) forms are as before
    rows = z[:, 0, :]
    assert_array_equal(loss.decide(rows), rows.argmax(axis=1))
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    assert_array_equal(loss.predict(rows), e / e.sum(axis=1, keepdims=True))


def test_declares_lengths():
    assert LOSSES["cross_entropy"].uses_lengths
    assert not LOSSES["mse"].uses_lengths and not LOSSES["binary_cross_entropy"].uses_lengths


# ---------------------------------------------------------------- batches combined


def test_metrics_combine_batches_over_real_steps():
    """batch_weight is the count of real steps, so Metrics' loss is the mean over every real step of all batches."""
    rng = np.random.default_rng(10)
    z = rng.standard_normal((6, 5, 4)) * 2
    t = rng.integers(0, 4, (6, 5))
    lengths = np.array([5, 1, 1, 2, 5, 4])
    for weight in (None, np.array([0.5, 1.0, 2.0, 3.0])):
        whole = _loss(weight, lengths)
        everything = whole.forward(z.copy(), t)
        metrics = Metrics(_loss(weight), [])
        for part in (slice(0, 3), slice(3, 6)):  # 7 real steps, then 11
            loss = metrics.loss_fn
            loss.lengths = lengths[part]
            metrics.add(loss.forward(z[part].copy(), t[part]), z[part], t[part], lengths[part])
        assert metrics.result()["loss"] == pytest.approx(everything, rel=1e-14)
        assert metrics.loss_weight == pytest.approx(whole.batch_weight, rel=1e-14)  # 18 steps, or their weights
        # weighing each batch by its sequences would be wrong here
        by_rows = np.mean([_loss(weight, lengths[p]).forward(z[p].copy(), t[p]) for p in (slice(0, 3), slice(3, 6))])
        assert by_rows != pytest.approx(everything, rel=1e-3)


# ---------------------------------------------------------------- through a network


def _network(k=3, steps=4, features=2, weight=None, seed=0):
    layers = [LAYERS["rnn"](units=4, output="sequence"), LAYERS["linear"](units=k)]
    loss = _loss(weight)
    net = Network(layers, loss, (steps, features), np.float64, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for p in net.params:  # weights large enough that the tanh is far from linear
        p.value[...] = rng.standard_normal(p.value.shape) * 0.7
    return net


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("lengths", [None, np.array([4, 2, 1])], ids=["whole", "lengths"])
def test_gradcheck_through_a_recurrent_network(lengths, weighted):
    net = _network(weight=np.array([0.5, 2.0, 1.25]) if weighted else None)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 2))
    t = rng.integers(0, 3, (3, 4))
    if lengths is not None:
        t[_padded(lengths, 4)] = -1  # padding targets out of range
    results = check_gradients(net, x, t, lengths=lengths)
    assert {"layers.0.weight_ih", "layers.0.weight_hh", "layers.1.weight", "layers.1.bias", "input"} <= {
        r.name for r in results
    }
    for r in results:
        assert r.passed and r.checked > 0 and r.kinks == 0 and r.max_rel_error <= 1e-6, r
    if lengths is not None:
        _, _, dx = net.loss_and_grad(x, t, input_grad=True, lengths=lengths)
        assert_array_equal(dx[_padded(lengths, 4)], 0)


def test_network_sets_the_lengths_of_its_output():
    net = _network()
    x = np.random.default_rng(12).standard_normal((3, 4, 2))
    t = np.zeros((3, 4), dtype=np.int64)
    net.loss_and_grad(x, t, lengths=np.array([4, 2, 1]))
    assert_array_equal(net.loss.lengths, [4, 2, 1])
    assert net.loss.batch_weight == 7.0
    net.loss_and_grad(x, t)
    assert net.loss.lengths is None and net.loss.batch_weight == 12.0


def test_reused_arrays_over_batches_of_different_lengths():
    """In training steps with reuse on, results match fresh ones and the arena keeps one array per batch shape."""
    rng = np.random.default_rng(13)
    net, fresh = _network(), _network()
    net.reuse_arrays(True)
    x = rng.standard_normal((3, 4, 2))
    t = rng.integers(0, 3, (3, 4))
    counts = []
    for lengths in ([4, 2, 1], [1, 1, 1], None, [3, 4, 2], [4, 4, 1], [2, 2, 2]):
        lengths = None if lengths is None else np.array(lengths)
        loss, _, _ = net.loss_and_grad(x, t, lengths=lengths)
        grads = [p.grad.copy() for p in net.params]
        expected, _, _ = fresh.loss_and_grad(x, t, lengths=lengths)
        assert loss == expected
        for g, p in zip(grads, fresh.params):
            assert_array_equal(g, p.grad)
        counts.append(len(net.arena.kept))
    assert counts[-1] == counts[3]  # once whole and padded batches have been seen, nothing new is kept
