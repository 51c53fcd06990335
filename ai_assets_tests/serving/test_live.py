"""Live serving over the registry: loading the production artifact, and the automation
decision on the cascade's answers (real registry, real smoke model, loopback Messages API)."""

import pytest

from ai_assets.data.datasets import split_banking77
from ai_assets.ops_db import OpsDb
from ai_assets.resources.model_serving import ModelServing
from ai_assets.serving.live import ArtifactError, production_model
from ai_assets_tests.conftest import SmokeModel, install_model

TEXTS = [r.text for r in split_banking77()["replay"][:80]]


@pytest.mark.parametrize("corrupt", [
    lambda data: data[:1000],  # a copy cut off early (pickle raises UnpicklingError)
    lambda data: b"<html>502 Bad Gateway</html>",  # an error page saved as the artifact (KeyError)
], ids=["truncated", "not_a_pickle"])
def test_a_corrupt_artifact_fails_with_the_rollback_hint(tmp_path, smoke_model, corrupt):
    artifact = tmp_path / "corrupt.joblib"
    artifact.write_bytes(corrupt(smoke_model.path.read_bytes()))
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    install_model(url, SmokeModel(smoke_model.candidate, artifact))
    with OpsDb.open(url) as db, pytest.raises(ArtifactError, match="`ai-assets model rollback` restores"):
        production_model(db)


def test_llm_answers_are_automated_only_where_the_local_model_agrees(tmp_path, smoke_model, server):
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    install_model(url, smoke_model)
    serving = ModelServing(anthropic_api_key="test-key", anthropic_base_url=server.base_url,
                           requests_per_minute=60_000, tokens_per_minute=100_000_000)  # no pauses here
    with OpsDb.open(url) as db:
        live = serving.live(db)
        records = live.serve(TEXTS)
        local = [p.intent for p in live.model.predict(TEXTS)]
    sure_llm = [(r, intent) for r, intent in zip(records, local, strict=True)
                if r["tier"].startswith("claude") and r["confidence"] >= serving.llm_min_confidence]
    agreeing = [r for r, intent in sure_llm if r["intent"] == intent]
    disagreeing = [(r, intent) for r, intent in sure_llm if r["intent"] != intent]
    assert agreeing and disagreeing  # the smoke model is wrong often enough
    assert all(r["automated"] or r["review_reason"].startswith("label_named_in_text") for r in agreeing)
    for r, intent in disagreeing:
        assert not r["automated"] and r["review_reason"] == f"llm_local_disagree: local {intent}"
