"""Real parts for the serving tests: the loopback Messages API, the real `anthropic` SDK
pointed at it, and a small real scikit-learn model as the local tier."""

from dataclasses import dataclass
from decimal import Decimal

import anthropic
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline

from ai_assets.data.datasets import load_categories, split_banking77
from ai_assets.serving.llm.claude_tier import ClaudeTier, is_retryable, retry_after_seconds
from ai_assets.serving.resilience.budget import Budget
from ai_assets.serving.resilience.circuit_breaker import CircuitBreaker
from ai_assets.serving.resilience.pricing import PriceTable
from ai_assets.serving.resilience.rate_limit import ConcurrencyLimit, RateLimiter
from ai_assets.serving.resilience.retry_policy import RetryPolicy
from ai_assets_tests.doubles import MessagesAPIServer
from ai_assets_tests.doubles.oracle import banking77_labels

LABELS = load_categories()
PRIMARY, SECONDARY = "claude-primary-test", "claude-secondary-test"
PRICES = PriceTable({PRIMARY: (3, 15), SECONDARY: (1, 5)})


@dataclass
class Prediction:
    intent: str
    confidence: float


class SmallLocalModel:
    """TF-IDF + logistic-loss SGD on the training split: a real local tier that trains in ~2 s
    (87% on validation; the production model is `ai_assets.serving.intent.intent_model`)."""

    version = "test-tfidf-lr"

    def __init__(self):
        rows = split_banking77()["train"]
        self.pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                                      SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=30, tol=None,
                                                    random_state=0))
        self.pipeline.fit([r.text for r in rows], [r.category for r in rows])

    def predict(self, texts):
        probabilities = self.pipeline.predict_proba(list(texts))
        classes = self.pipeline.classes_
        return [Prediction(classes[p.argmax()], float(p.max())) for p in probabilities]


@pytest.fixture(scope="session")
def local_model() -> SmallLocalModel:
    return SmallLocalModel()


@pytest.fixture
def server():
    with MessagesAPIServer(banking77_labels()) as srv:
        yield srv


@pytest.fixture
def client(server):
    return anthropic.Anthropic(api_key="test-key", base_url=server.base_url, max_retries=0)


class MemoryCache:
    """The cache protocol over a dict (the operations database implements the same)."""

    def __init__(self):
        self.entries: dict[str, dict] = {}

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, *, model, prompt_version, response):
        self.entries.setdefault(key, response)


@pytest.fixture
def make_tier(client):
    def build(model=PRIMARY, *, cache=None, failure_threshold=3, max_attempts=3, rpm=None,
              usage=None, timeout=5.0, **kw) -> ClaudeTier:
        return ClaudeTier(
            name=model, client=client, model=model, labels=LABELS, prices=PRICES,
            limiter=RateLimiter(requests_per_minute=rpm), concurrency=ConcurrencyLimit(8),
            breaker=CircuitBreaker(model, failure_threshold=failure_threshold, cooldown=60),
            retry=RetryPolicy(retryable=is_retryable, max_attempts=max_attempts, base_delay=0.01,
                              max_delay=2.0, retry_after=retry_after_seconds, seed=1),
            cache=cache, record_usage=usage, call_timeout_s=timeout, **kw)
    return build


def budget(daily: str = "100", run: str | None = None) -> Budget:
    return Budget(daily_limit=Decimal(daily), run_limit=Decimal(run) if run else None)
