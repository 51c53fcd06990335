"""Sentence encoders the intent model can be trained with, chosen by name.

`all-MiniLM-L6-v2` is the production encoder (meaning view of the ensemble). `hashing-512`
needs no neural network: signed hashing of words and word bigrams, for machines without
the torch install and for quick smoke trainings (tests, `AI_ASSETS_MODEL_ENCODER=hashing`).
A saved model names its encoder, and loading picks the same one by that name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from ai_assets.serving.intent.intent_model import MiniLMEncoder, TextEncoder, default_encoder

ENCODER_CHOICES = {"minilm": MiniLMEncoder.name, "hashing": "hashing-512"}


class HashingEncoder:
    """Signed hashing of lower-cased words and word bigrams into 512 dims, L2-normalised."""

    name = ENCODER_CHOICES["hashing"]
    dims = 512

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            words = re.findall(r"\w+", text.lower())
            for token in words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]:
                h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
                out[i, h % self.dims] += 1.0 if (h >> 20) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


def encoder_named(name: str) -> TextEncoder:
    """The encoder for a choice (`minilm`, `hashing`) or a saved model's encoder name."""
    if name in ("minilm", MiniLMEncoder.name):
        return default_encoder()
    if name in ("hashing", HashingEncoder.name):
        return HashingEncoder()
    raise ValueError(f"unknown text encoder {name!r}: expected one of {sorted(ENCODER_CHOICES)}")
