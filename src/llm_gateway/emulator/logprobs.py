"""Plausible log-probabilities of content tokens, for `logprobs` and `top_logprobs`.

The sampled token gets a probability between 0.3 and 0.999; the alternatives (other words of the
vocabulary, with the token's leading whitespace) share part of the rest, so every logprob is
negative and the probabilities of a position sum to less than 1. `top_logprobs` lists the k
likeliest of these, most likely first; the sampled token is usually, not always, among them.
"""

from __future__ import annotations

import math
import random
from typing import Any

from llm_gateway.emulator.text import VOCABULARY


def _entry(token: str, probability: float) -> dict[str, Any]:
    return {"token": token, "logprob": math.log(probability), "bytes": list(token.encode())}


def logprob(token: str, top: int, rng: random.Random) -> dict[str, Any]:
    """The `choices[].logprobs.content[]` entry of one sampled token, with `top` alternatives."""
    probability = rng.uniform(0.3, 0.999)
    lead = token[: len(token) - len(token.lstrip())]
    word = token.strip().lower()
    others = rng.sample([w for w in VOCABULARY if w != word], top)
    candidates = [(token, probability)]
    rest = 1 - probability
    for other in others:
        share = rest * rng.uniform(0.2, 0.6)
        rest -= share
        candidates.append((lead + other, share))
    candidates.sort(key=lambda candidate: candidate[1], reverse=True)
    return {
        **_entry(token, probability),
        "top_logprobs": [_entry(*candidate) for candidate in candidates[:top]],
    }
