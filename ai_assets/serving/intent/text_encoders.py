"""Sentence encoders the intent model can be trained with, chosen by name.

`all-MiniLM-L6-v2` is the production encoder (the meaning view of the ensemble): the network
shipped as an ONNX graph with static int8 projections and its tokenizer in
ai_assets/data/encoders/all_minilm_l6_v2/, run by onnxruntime, with no torch.
`scripts/export_encoder.py` produces those files from the sentence-transformers model (`make
encoder` checks they are the ones it produces); its token ids are sentence-transformers' and
its vectors within cosine 0.97 of them, 0.99 in the median (ai_assets_tests/serving/intent/
test_text_encoders.py holds it to recorded token ids and embeddings). `hashing-512` needs no
network at all: signed hashing of words and word bigrams, for quick smoke trainings (tests,
`AI_ASSETS_MODEL_ENCODER=hashing`).

A saved model records its encoder's name and version, and loading picks the same one by name;
a version the encoder does not accept is refused with a message asking for a retraining.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

import numpy as np

__all__ = ["ENCODER_CHOICES", "HashingEncoder", "MiniLMEncoder", "TextEncoder", "default_encoder",
           "encoder_named"]


class TextEncoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text.

    The same text gives the same vector, byte for byte, whatever else is in the batch.
    """

    name: str
    version: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def accepts(self, version: str | None) -> bool:
        """Whether a model trained with this encoder at `version` can be served by this one."""
        ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (ONNX graph, int8 projections with fixed scales, mean pooling and L2
    normalisation inside) on onnxruntime.

    Tokenisation is sentence-transformers' for this model: its own tokenizer.json, truncation
    at 256 tokens, no fixed padding. Rows are batched with rows of exactly their own token
    count, so nothing is padded, and a batch never has fewer than two rows (a lone row runs
    beside a copy of itself): onnxruntime's kernels take a different path for a batch of one
    and sum a row's attention differently at a different padded length, so this is what makes
    a text's vector independent of its batch mates (measured: batched freely, 406 of 1,673 rows
    differed in the last bits; batched like this, none). Padding nothing is also the cheapest
    batching: BANKING77 texts average 16.0 tokens, 19.7 when rounded up to a multiple of 8,
    and the encoder runs about 1.2x faster without that padding. The loaded session is
    shared by every instance in the process.

    A model trained with another graph is refused, a model trained before versions were
    recorded (sentence-transformers on torch, fp32) included: its vectors differ from these
    (median cosine 0.995), so its neighbours, heads and threshold no longer fit.
    """

    name = "all-MiniLM-L6-v2"
    dims = 384
    _shared: tuple[Any, Any, dict] | None = None
    _lock = threading.Lock()

    def __init__(self, batch_size: int = 64):
        if batch_size < 2:
            raise ValueError("batch_size must be at least 2")
        self.batch_size = batch_size

    @classmethod
    def _loaded(cls) -> tuple[Any, Any, dict]:
        with cls._lock:
            if cls._shared is None:
                import onnxruntime
                from tokenizers import Tokenizer

                files = resources.files("ai_assets.data.encoders.all_minilm_l6_v2")
                manifest = json.loads(files.joinpath("manifest.json").read_text(encoding="utf-8"))
                tokenizer = Tokenizer.from_str(files.joinpath("tokenizer.json").read_text(encoding="utf-8"))
                tokenizer.enable_truncation(manifest["max_tokens"])
                tokenizer.no_padding()
                options = onnxruntime.SessionOptions()
                options.inter_op_num_threads = 1
                options.log_severity_level = 3  # warnings about unused initialisers are not the operator's
                # Extended graph fusions: as fast as "all" here and a little faster to load. No
                # spinning: idle intra-op threads that spin starve the other process on a busy
                # 2-core machine (Dagster's multiprocess executor, pytest -n 2) for ~6% quiet speed.
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                with resources.as_file(files.joinpath("model.onnx")) as graph:  # a path loads 2.5x faster than bytes
                    session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
                cls._shared = (session, tokenizer, manifest)
            return cls._shared

    @property
    def version(self) -> str:
        """The graph's format (`onnx-int8`), `:` and the first 16 hex digits of its SHA-256 (from
        the manifest)."""
        manifest = self._loaded()[2]
        return f"{manifest['format']}:{manifest['files']['model.onnx'].removeprefix('sha256:')[:16]}"

    def accepts(self, version: str | None) -> bool:
        return version == self.version

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids the network sees for each text (leading and trailing whitespace stripped)."""
        tokenizer = self._loaded()[1]
        return [encoding.ids for encoding in tokenizer.encode_batch([_text(t).strip() for t in texts])]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        session = self._loaded()[0]
        ids = self.token_ids(texts)
        by_length: dict[int, list[int]] = defaultdict(list)
        for row, row_ids in enumerate(ids):
            by_length[len(row_ids)].append(row)
        for width, rows in sorted(by_length.items()):
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start:start + self.batch_size]
                run = chunk if len(chunk) > 1 else chunk * 2
                input_ids = np.array([ids[row] for row in run], dtype=np.int64)
                mask = np.ones((len(run), width), dtype=np.int64)
                vectors = session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
                out[chunk] = vectors[:len(chunk)]
        return out


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"texts must be strings, not {type(value).__name__}")
    return value


_default_encoder: MiniLMEncoder | None = None


def default_encoder() -> MiniLMEncoder:
    global _default_encoder
    if _default_encoder is None:
        _default_encoder = MiniLMEncoder()
    return _default_encoder


class HashingEncoder:
    """Signed hashing of lower-cased words and word bigrams into 512 dims, L2-normalised."""

    name = "hashing-512"
    version = "1"
    dims = 512

    def accepts(self, version: str | None) -> bool:
        return version in (None, self.version)

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


ENCODER_CHOICES = {"minilm": MiniLMEncoder.name, "hashing": HashingEncoder.name}


def encoder_named(name: str) -> TextEncoder:
    """The encoder for a choice (`minilm`, `hashing`) or a saved model's encoder name."""
    if name in ("minilm", MiniLMEncoder.name):
        return default_encoder()
    if name in ("hashing", HashingEncoder.name):
        return HashingEncoder()
    raise ValueError(f"unknown text encoder {name!r}: expected one of {sorted(ENCODER_CHOICES)}")
