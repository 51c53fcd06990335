"""The shipped ONNX sentence encoder: sentence-transformers' tokens, its vectors to int8 accuracy,
batch-independent.

fixtures/minilm_reference.json holds what sentence-transformers itself (on torch) gives for a
set of awkward texts; scripts/export_encoder.py writes it beside the ONNX file, and `make
encoder` (the slow test at the end) proves both are what the script produces.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from ai_assets.data.datasets import load_banking77
from ai_assets.serving.intent.intent_model import IntentModel
from ai_assets.serving.intent.out_of_scope import load_out_of_scope
from ai_assets.serving.intent.text_encoders import HashingEncoder, MiniLMEncoder, encoder_named

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "minilm_reference.json").read_text())
ENCODER_FILES = resources.files("ai_assets.data.encoders.all_minilm_l6_v2")


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def test_token_ids_are_sentence_transformers(encoder):
    rows = REFERENCE["rows"]
    assert encoder.token_ids([r["text"] for r in rows]) == [r["token_ids"] for r in rows]
    # The window is 256 tokens, [CLS] and [SEP] included, and the reference has texts beyond it.
    assert max(len(r["token_ids"]) for r in rows) == 256
    assert any(len(r["text"].split()) > 256 for r in rows)


def test_vectors_are_sentence_transformers_to_int8_accuracy(encoder):
    rows = REFERENCE["rows"]
    vectors = encoder.encode([r["text"] for r in rows])
    expected = np.array([r["embedding"] for r in rows], dtype=np.float64)
    assert vectors.shape == (len(rows), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * expected).sum(axis=1)
    # Int8 projections move a vector a little (measured: 0.974 worst, 0.993 median over 3,000
    # BANKING77 texts); a wrong graph, tokenizer or pooling lands far below this.
    assert float(cosine.min()) > 0.97 and float(np.median(cosine)) > 0.99
    assert float(np.abs(vectors - expected).max()) > 1e-4  # it is the int8 graph, not the torch one


def test_the_same_text_gets_the_same_vector_in_any_batch(encoder):
    texts = [r.text for r in load_banking77()[::37]][:250] + [r["text"] for r in REFERENCE["rows"]]
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    rng = random.Random(0)
    compared = 0
    for _ in range(40):
        picked = rng.sample(range(len(texts)), rng.randint(1, 90))
        batch = encoder.encode([texts[i] for i in picked])
        assert np.array_equal(batch, alone[picked]), "a text's vector changed with its batch mates"
        compared += len(picked)
    small_batches = MiniLMEncoder(batch_size=3).encode(texts)
    assert np.array_equal(small_batches, alone)
    assert compared > 1000


def test_truncation_keeps_the_first_256_tokens(encoder):
    head = "my card payment was declined " * 60
    assert len(encoder.token_ids([head])[0]) == 256
    assert np.array_equal(encoder.encode([head])[0], encoder.encode([head + " and now a refund please"])[0])


def test_bad_input_is_refused_clearly(encoder):
    with pytest.raises(TypeError, match="strings"):
        encoder.encode(["fine", None])
    with pytest.raises(ValueError, match="batch_size"):
        MiniLMEncoder(batch_size=1)
    assert encoder.encode([]).shape == (0, 384)


def test_shipped_files_are_the_ones_the_manifest_names():
    manifest = json.loads(ENCODER_FILES.joinpath("manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert "sha256:" + hashlib.sha256(ENCODER_FILES.joinpath(name).read_bytes()).hexdigest() == digest, name
    assert manifest["max_tokens"] == 256 and manifest["dimensions"] == 384
    assert ENCODER_FILES.joinpath("LICENSE").read_text().find("Apache License") >= 0
    assert "all-MiniLM-L6-v2" in ENCODER_FILES.joinpath("ATTRIBUTION.md").read_text()
    assert MiniLMEncoder().version == "onnx-int8:" + manifest["files"]["model.onnx"].removeprefix("sha256:")[:16]
    assert manifest["quantization"]["quantized_matmuls"] == 30


def test_a_model_names_its_encoder_version_and_a_foreign_version_is_refused(tmp_path):
    rows = [r for r in load_banking77() if r.category == "card_arrival"][:40] + \
        [r for r in load_banking77() if r.category == "lost_or_stolen_card"][:40]
    model = IntentModel.train([r.text for r in rows], [r.category for r in rows], load_out_of_scope("train")[:40],
                              encoder=HashingEncoder(), seed=0)
    assert model.info["encoder"] == "hashing-512" and model.info["encoder_version"] == HashingEncoder.version
    path = model.save(tmp_path / "model.joblib")
    assert IntentModel.load(path, encoder=encoder_named(model.info["encoder"])).info == model.info

    model.info = {**model.info, "encoder_version": "2-not-this-one"}
    foreign = model.save(tmp_path / "foreign.joblib")
    with pytest.raises(ValueError, match="retrain it"):
        IntentModel.load(foreign, encoder=HashingEncoder())

    legacy_info = {k: v for k, v in model.info.items() if k != "encoder_version"}  # before versions were kept
    model.info = legacy_info
    legacy = model.save(tmp_path / "legacy.joblib")
    assert IntentModel.load(legacy, encoder=HashingEncoder()).info == legacy_info


def test_models_trained_on_another_graph_are_refused():
    # A torch-trained model carries no version; the int8 graph's vectors are not its vectors,
    # so neither it nor a model trained on another graph (the fp32 ONNX one) is served.
    encoder = MiniLMEncoder()
    assert encoder.accepts(encoder.version)
    assert not encoder.accepts(None)
    assert not encoder.accepts("onnx-fp32:3cc333b8a490202c")


NO_TORCH = """
import importlib.abc, importlib.util, pkgutil, sys
BLOCKED = ("torch", "sentence_transformers", "transformers")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is unimportable in this test")
sys.meta_path.insert(0, Refuse())
import ai_assets
# Alembic's env script runs only inside a migration (as in scripts/check_fresh_install.py).
names = [m.name for m in pkgutil.walk_packages(ai_assets.__path__, "ai_assets.")
         if m.name != "ai_assets.ops_db.migrations.env"]
for name in names:
    importlib.import_module(name)
from ai_assets.definitions import defs  # the code location, with its resources
defs.resolve_all_job_defs()
from ai_assets.serving.intent.text_encoders import default_encoder
assert default_encoder().encode(["my card has not arrived"]).shape == (1, 384)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print(len(names))
"""


def test_every_shipped_module_imports_and_encodes_with_torch_unimportable(tmp_path):
    done = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "DAGSTER_HOME": str(tmp_path), "AI_ASSETS_DATA_DIR": str(tmp_path)},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 100  # every module of the package was imported


@pytest.mark.slow
def test_make_encoder_reproduces_the_shipped_files():
    # Builds .venv-encoder (torch, sentence-transformers) on first use, exports again, compares the
    # shipped files' bytes and the reference fixture.
    done = subprocess.run(["make", "--no-print-directory", "encoder"], capture_output=True, text=True, cwd=ROOT,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report["identical"] is True and set(report["files"]) == {"model.onnx", "tokenizer.json", "manifest.json"}
    # sentence-transformers' own vectors are repeatable to ~1e-7, not to the bit: ids exact, vectors close.
    assert report["reference"]["token_ids_equal"] is True
    assert report["reference"]["max_embedding_difference"] <= 1e-6
