"""LLM cache: stable keys, put/get, idempotent put (first answer wins), hit counting."""

from __future__ import annotations

import threading

from ai_assets.ops_db import CacheWrite, OpsDb, cache_key, create_engine_for, text_hash


def test_key_is_model_prompt_and_normalised_text():
    key = cache_key("claude-haiku", "p3", "Where is my  card?\n")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == cache_key("claude-haiku", "p3", "  Where is my card? ")  # whitespace normalised
    assert key == cache_key("claude-haiku", "p3", "Where\u200b is my card?")  # invisible characters
    assert key != cache_key("claude-haiku", "p3", "where is my card?")  # case is kept
    assert key != cache_key("claude-sonnet", "p3", "Where is my card?")
    assert key != cache_key("claude-haiku", "p4", "Where is my card?")
    # No ambiguity where fields meet.
    assert cache_key("ab", "c", "x") != cache_key("a", "bc", "x")
    assert text_hash("a  b") == text_hash("a b")


def test_put_get_idempotent_put_and_hit_counts(ops: OpsDb):
    key = cache_key("m", "p1", "card not arrived")
    assert ops.cache.get(key) is None
    assert ops.cache.entry(key) is None  # a miss stores nothing

    answer = {"intent": "card_arrival", "confidence": 0.93, "summary": "Card has not arrived."}
    assert ops.cache.put(key, model="m", prompt_version="p1", response=answer) is True
    entry = ops.cache.entry(key)
    assert (entry.hit_count, entry.last_hit_at, entry.model, entry.prompt_version) == (0, None, "m", "p1")

    assert ops.cache.put(key, model="m", prompt_version="p1", response={"intent": "other"}) is False
    assert ops.cache.get(key) == answer  # the first answer stays
    assert ops.cache.get(key) == answer
    entry = ops.cache.entry(key)
    assert entry.hit_count == 2 and entry.last_hit_at >= entry.created_at


def test_many_at_once(ops: OpsDb):
    keys = [cache_key("m", "p1", f"message {i}") for i in range(1200)]  # more than one chunk
    writes = [CacheWrite(k, "m", "p1", {"i": i}) for i, k in enumerate(keys)]
    assert ops.cache.put_many(writes[:700]) == 700
    assert ops.cache.put_many(writes + writes[:5]) == 500  # only the new keys, duplicates once
    wanted = keys[::3] + [cache_key("m", "p1", "never seen")]
    found = ops.cache.get_many(wanted)
    assert found == {k: {"i": keys.index(k)} for k in keys[::3]}
    assert ops.cache.entry(keys[0]).hit_count == 1 and ops.cache.entry(keys[1]).hit_count == 0
    assert ops.cache.get_many([]) == {} and ops.cache.put_many([]) == 0


def test_concurrent_puts_of_one_key(ops: OpsDb, db_url):
    """Two runs that miss together both write: no error, one row, one answer."""
    key = cache_key("m", "p1", "race")
    n = 4
    clients = [OpsDb(create_engine_for(db_url)) for _ in range(n)]
    results, errors = [], []
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait()
            results.append(clients[i].cache.put(key, model="m", prompt_version="p1", response={"by": i}))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.dispose()
    assert errors == []
    assert sorted(results) == [False] * (n - 1) + [True]
    winner = ops.cache.get(key)
    assert winner["by"] in range(n)
