"""The training reference a day's drift is judged against, built once per model version.

Inputs: the texts the model learnt from (BANKING77's training and validation splits, the shipped
copy: the same on every machine). Outputs: the model's own answers on its validation split (on
training texts it is overconfident). Building it costs seconds (the reference's leave-one-out
novelty scores), so it is kept beside the model's artifact, keyed by the model version, and
rebuilt only when missing or of another format: a deterministic cache, not state.
"""

from __future__ import annotations

from pathlib import Path

from ai_assets.data.datasets import split_banking77
from ai_assets.files import write_atomically
from ai_assets.monitoring.drift import DriftReference, DriftSample
from ai_assets.serving.intent.intent_model import IntentModel

REFERENCE_FILE = "drift_reference.json"
# One process serves many partitions (a backfill, the tests): each reference is read once.
_LOADED: dict[tuple[str, str], DriftReference] = {}


def training_reference(model: IntentModel, label: str) -> DriftReference:
    """Inputs from the training and validation texts, outputs from `model` on validation."""
    split = split_banking77()
    texts = [row.text for row in split["train"] + split["validation"]]
    validation = [row.text for row in split["validation"]]
    outputs = DriftSample.from_predictions(validation, model.predict(validation, top_k=1))
    return DriftReference.build(DriftSample(texts=tuple(texts)), outputs, label=label)


def cached_training_reference(artifact_uri: str, model_label: str, load_model) -> DriftReference:
    """The reference stored beside the artifact, or built with `load_model()` and stored there
    (written to a unique temporary name, then renamed: two runs building it at once both succeed)."""
    if (artifact_uri, model_label) in _LOADED:
        return _LOADED[artifact_uri, model_label]
    reference = _stored_or_built(Path(artifact_uri).parent / REFERENCE_FILE, model_label, load_model)
    _LOADED[artifact_uri, model_label] = reference
    return reference


def _stored_or_built(path: Path, model_label: str, load_model) -> DriftReference:
    if path.is_file():
        try:
            reference = DriftReference.from_bytes(path.read_bytes())
            if reference.label == model_label:
                return reference
        except ValueError:  # another format version or a damaged file: rebuild it
            pass
    reference = training_reference(load_model(), model_label)
    write_atomically(path, reference.to_bytes(), durable=False)  # a cache: rebuilt when lost
    return reference


__all__ = ["REFERENCE_FILE", "cached_training_reference", "training_reference"]
