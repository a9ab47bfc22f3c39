"""Text from a trained language model: one token at a time, each drawn from the model's next-token distribution.

The model reads the last `steps` tokens (the window it was trained on; fewer at the start,
as a shorter sequence with its length) and gives, at the window's last real step, logits z
over the vocabulary; the next token is drawn with probability softmax(z / temperature), never
`<pad>` nor `<unk>`. Temperature 1 samples the model's own distribution, below 1 it favours
the likelier tokens, 0 always takes the likeliest (greedy, deterministic). Each window starts
from the zero state, as every training window did, so the model sees what it was trained on.
"""

from __future__ import annotations

import math

import numpy as np

from ..data.text import PAD_ID, UNK_ID
from ..errors import NntrainError
from .experiment import Experiment

MAX_TOKENS = 1_000_000  # --length at most: a slip of the finger must not run for days


def sample_text(exp: Experiment, length: int, temperature: float = 1.0, prime: str = "", seed: int = 0) -> str:
    """`prime` followed by `length` generated tokens, as text (the tokenizer's join)."""
    vocabulary = exp.dataset.vocabulary
    if vocabulary is None or exp.dataset.y.ndim != 2:
        raise NntrainError("this run is not a language model (it was not trained on a text file with data.text)")
    if not 0 <= length <= MAX_TOKENS:
        raise NntrainError(f"--length must be between 0 and {MAX_TOKENS:,} tokens, got {length}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise NntrainError(f"--temperature must be a finite number >= 0, got {temperature}")
    tokenizer, network = vocabulary.tokenizer, exp.network
    steps = network.in_shape[0]
    primed = tokenizer.split(prime)
    ids = [vocabulary.id(t) for t in primed]
    if not ids:  # a start the model knows: a line break if the text has one, else its most frequent token
        ids = [vocabulary.id("\n") if vocabulary.id("\n") != UNK_ID else 2]
        primed = [vocabulary.token(ids[0])]
    rng = np.random.default_rng(seed)
    window = np.zeros((1, steps), dtype=network.dtype)
    generated = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(length):
            context = ids[-steps:]
            window[0, : len(context)] = context
            window[0, len(context) :] = PAD_ID
            z = network.forward(window, lengths=np.array([len(context)]))[0, len(context) - 1].astype(np.float64)
            z[[PAD_ID, UNK_ID]] = -np.inf
            if not np.isfinite(z[2:]).all():
                raise NntrainError("the model's outputs are not finite: its parameters overflow")
            if temperature == 0:
                token = int(np.argmax(z))
            else:
                p = np.exp((z - z.max()) / temperature)
                token = int(rng.choice(len(p), p=p / p.sum()))
            ids.append(token)
            generated.append(vocabulary.token(token))
    return tokenizer.join(primed + generated)
