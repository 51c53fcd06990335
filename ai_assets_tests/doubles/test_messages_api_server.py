"""The loopback Messages API server, driven by the real `anthropic` SDK over HTTP."""

from __future__ import annotations

import asyncio
import html
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import pytest
from anthropic.types import TextBlock, ToolUseBlock

from ai_assets_tests.doubles import (
    FAULT_KINDS,
    LabelOracle,
    MessagesAPIServer,
    banking77_labels,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL_NAME = "classify_message"
LABELS = banking77_labels()
CATEGORIES = sorted(set(LABELS.values()))
# A spread of real texts: every 97th row, including some with characters HTML escapes.
SAMPLE = list(LABELS.items())[::97]


def tool(enum=None, field="intent", extra=None):
    props = {field: {"type": "string", "enum": enum or CATEGORIES + ["out_of_scope"]},
             "confidence": {"type": "number", "minimum": 0, "maximum": 1},
             "summary": {"type": "string"}}
    props.update(extra or {})
    return {"name": TOOL_NAME, "description": "Record the intent.",
            "input_schema": {"type": "object", "properties": props, "required": list(props),
                             "additionalProperties": False}}


def request(text, *, with_tool=True, model="claude-test-1", schema=None, wrap=True):
    content = f"<customer_message>\n{html.escape(text, quote=False)}\n</customer_message>" if wrap else text
    body = {"model": model, "max_tokens": 256, "system": "Classify the customer's message.",
            "messages": [{"role": "user", "content": content}]}
    if with_tool:
        body["tools"] = [schema or tool()]
        body["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
    return body


@pytest.fixture
def make_server():
    servers = []

    def make(labels=LABELS, **kwargs):
        server = MessagesAPIServer(labels, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def client(server, *, max_retries=0, timeout=5.0, api_key="test"):
    return anthropic.Anthropic(api_key=api_key, base_url=server.base_url,
                               max_retries=max_retries, timeout=timeout)


def intent_of(message):
    blocks = [b for b in message.content if isinstance(b, ToolUseBlock)]
    assert len(blocks) == 1, message.content
    return blocks[0].input["intent"]


def test_tool_use_answer_is_the_oracle_label_with_usage_and_request_id(make_server):
    server = make_server()
    api = client(server)
    for text, label in SAMPLE:
        raw = api.messages.with_raw_response.create(**request(text))
        message = raw.parse()
        assert raw.headers["request-id"].startswith("req_")
        assert message.type == "message" and message.role == "assistant"
        assert message.model == "claude-test-1" and message.stop_reason == "tool_use"
        block = message.content[0]
        assert isinstance(block, ToolUseBlock) and block.name == TOOL_NAME
        assert block.input["intent"] == label
        assert set(block.input) == {"intent", "confidence", "summary"}
        assert 0.8 <= block.input["confidence"] <= 0.99 and block.input["summary"]
        assert message.usage.input_tokens > 100 and message.usage.output_tokens > 0
    stats = server.stats()
    assert stats.messages_by_status == {200: len(SAMPLE)}
    assert stats.by_model == {"claude-test-1": len(SAMPLE)}
    assert stats.input_tokens > 100 * len(SAMPLE)
    # count_tokens agrees with the usage the answer reported
    body = request(SAMPLE[0][0])
    counted = api.messages.count_tokens(model=body["model"], system=body["system"],
                                        messages=body["messages"], tools=body["tools"],
                                        tool_choice=body["tool_choice"])
    assert counted.input_tokens == api.messages.create(**body).usage.input_tokens


def test_text_answers_substring_lookup_unknown_texts_and_callable_labels(make_server):
    server = make_server()
    api = client(server)
    text, label = SAMPLE[3]
    answer = api.messages.create(**request(text, with_tool=False))
    assert isinstance(answer.content[0], TextBlock) and answer.content[0].text == label
    assert answer.stop_reason == "end_turn"
    # the known text anywhere inside a free-form prompt, with its whitespace and case changed
    prose = f"Please classify this.  The customer said:\n{text.upper()}  \nThanks!"
    assert intent_of(api.messages.create(**request(prose, wrap=False))) == label
    assert intent_of(api.messages.create(**request("What is the weather on Mars today?"))) == "out_of_scope"
    # a callable label source
    callable_server = make_server(labels=lambda t: "card_arrival" if "card" in t else None)
    api2 = client(callable_server)
    assert intent_of(api2.messages.create(**request("where is my card"))) == "card_arrival"
    assert intent_of(api2.messages.create(**request("hello"))) == "out_of_scope"


def test_tool_input_follows_the_tool_schema(make_server):
    server = make_server()
    api = client(server)
    text, label = SAMPLE[5]
    schema = tool(field="category", extra={"priority": {"type": "integer"}})
    del schema["input_schema"]["properties"]["summary"]
    schema["input_schema"]["required"].remove("summary")
    block = api.messages.create(**request(text, schema=schema)).content[0]
    assert block.input == {"category": label, "confidence": block.input["confidence"], "priority": 0}
    # an enum that lacks the true label: the oracle stays inside the enum
    narrow = tool(enum=["lost_or_stolen_card", "out_of_scope"])
    assert intent_of(api.messages.create(**request(text, schema=narrow))) == "out_of_scope"
    # a custom oracle shapes the answer freely
    custom = make_server(oracle=lambda req: {"intent": req.allowed_labels[0], "confidence": 1.0,
                                              "summary": req.user_text[:10]})
    got = client(custom).messages.create(**request(text)).content[0].input
    assert got["intent"] == CATEGORIES[0] and got["confidence"] == 1.0


def test_error_rate_is_deterministic_and_changes_at_runtime(make_server):
    texts = list(LABELS.items())[::100]  # 101 texts
    first, second = make_server(error_rate=0.2), make_server(error_rate=0.2)

    def answers(server):
        api = client(server)
        return [intent_of(api.messages.create(**request(t))) for t, _ in texts]

    run1 = answers(first)
    assert run1 == answers(first) == answers(second)
    oracle = LabelOracle(LABELS)
    allowed = CATEGORIES + ["out_of_scope"]
    predicted = [oracle.decide(t, allowed, error_rate=0.2) for t, _ in texts]
    assert run1 == [d.label for d in predicted]
    wrong = [i for i, (t, label) in enumerate(texts) if run1[i] != label]
    assert wrong == [i for i, d in enumerate(predicted) if d.wrong]
    assert 0.1 <= len(wrong) / len(texts) <= 0.3
    assert all(run1[i] in allowed for i in wrong)
    first.configure(error_rate=0.0)
    assert answers(first) == [label for _, label in texts]


def test_authentication_and_required_headers(make_server):
    server = make_server(api_key="right-key")
    with pytest.raises(anthropic.AuthenticationError) as err:
        client(server, api_key="wrong-key").messages.create(**request("hi"))
    assert err.value.status_code == 401 and err.value.type == "authentication_error"
    assert client(server, api_key="right-key").messages.create(**request("hi")).content

    def raw_post(headers):
        req = urllib.request.Request(server.base_url + "/v1/messages", method="POST",
                                     data=json.dumps(request("hi")).encode(),
                                     headers={"content-type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    status, body = raw_post({"x-api-key": "right-key", "anthropic-version": "2023-06-01"})
    assert status == 200 and body["type"] == "message"  # the documented header works too
    status, body = raw_post({"anthropic-version": "2023-06-01"})
    assert status == 401 and body == {"type": "error", "error": {
        "type": "authentication_error", "message": "x-api-key header is required"}}
    status, body = raw_post({"x-api-key": "right-key"})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert server.stats().by_status == {200: 2, 401: 2, 400: 1}


@pytest.mark.parametrize("fault, status, error_class, error_type", [
    ("overloaded", 529, anthropic.OverloadedError, "overloaded_error"),
    ("api_error", 500, anthropic.InternalServerError, "api_error"),
    ("unavailable", 503, anthropic.ServiceUnavailableError, "api_error"),
    ("bad_request", 400, anthropic.BadRequestError, "invalid_request_error"),
])
def test_error_faults_raise_the_sdk_status_errors(make_server, fault, status, error_class, error_type):
    server = make_server()
    server.inject(fault)
    with pytest.raises(error_class) as err:
        client(server).messages.create(**request("hi"))
    assert err.value.status_code == status and err.value.type == error_type
    assert err.value.request_id.startswith("req_")
    if status >= 500:
        assert isinstance(err.value, anthropic.InternalServerError)
    assert client(server).messages.create(**request("hi")).content  # one fault, then normal
    assert server.stats().by_fault == {fault: 1}


def test_injected_429_carries_retry_after(make_server):
    server = make_server()
    server.inject("rate_limit")
    with pytest.raises(anthropic.RateLimitError) as err:
        client(server).messages.create(**request("hi"))
    assert err.value.status_code == 429 and err.value.type == "rate_limit_error"
    assert err.value.response.headers["retry-after"] == "1"
    server.configure(retry_after_s=2.5, retry_after_ms_header=True)
    server.inject("rate_limit")
    with pytest.raises(anthropic.RateLimitError) as err:
        client(server).messages.create(**request("hi"))
    assert err.value.response.headers["retry-after"] == "2.5"
    assert err.value.response.headers["retry-after-ms"] == "2500"


def fire(server, n, **kwargs):
    """n concurrent requests; returns the outcomes (a Message or the exception)."""
    api = client(server, **kwargs)
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        try:
            return api.messages.create(**request(SAMPLE[i % len(SAMPLE)][0]))
        except anthropic.APIError as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_request_rate_limit_answers_429_above_the_limit_only(make_server):
    limited = make_server(rpm=3)
    outcomes = fire(limited, 8)
    refused = [o for o in outcomes if isinstance(o, anthropic.RateLimitError)]
    assert len(refused) == 5 and sum(isinstance(o, anthropic.types.Message) for o in outcomes) == 3
    for exc in refused:
        headers = exc.response.headers
        assert 1 <= int(headers["retry-after"]) <= 20  # 1 request back in 60/3 s
        assert headers["anthropic-ratelimit-requests-limit"] == "3"
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.stats().messages_by_status == {200: 3, 429: 5}
    assert limited.stats().by_fault == {"rate_limited": 5}

    roomy = make_server(rpm=8, rps=8)
    assert all(isinstance(o, anthropic.types.Message) for o in fire(roomy, 8))
    # flipped at runtime: the new limit starts with a full bucket
    roomy.configure(rpm=2, rps=None)
    assert sum(isinstance(o, anthropic.RateLimitError) for o in fire(roomy, 4)) == 2


def test_token_rate_limit(make_server):
    body = request(SAMPLE[0][0])
    probe = make_server()
    tokens = client(probe).messages.create(**body).usage.input_tokens
    server = make_server(tpm=tokens * 2.5)
    api = client(server)
    api.messages.create(**body)
    ok = api.messages.with_raw_response.create(**body)
    assert int(ok.headers["anthropic-ratelimit-input-tokens-remaining"]) < tokens
    with pytest.raises(anthropic.RateLimitError) as err:
        api.messages.create(**body)
    assert int(err.value.response.headers["retry-after"]) >= 1


def test_sdk_retry_honours_retry_after(make_server):
    server = make_server()
    server.inject("rate_limit")  # retry-after: 1
    started = time.monotonic()
    message = client(server, max_retries=2).messages.create(**request(SAMPLE[0][0]))
    elapsed = time.monotonic() - started
    assert intent_of(message) == SAMPLE[0][1]
    assert elapsed >= 1.0
    records = server.requests("messages")
    assert [(r.status, r.retry_count) for r in records] == [(429, 0), (200, 1)]
    assert records[1].t - records[0].t >= 1.0


def test_hang_past_the_client_timeout_raises_api_timeout(make_server):
    server = make_server(hang_s=20)
    server.inject("hang")
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client(server, timeout=0.3).messages.create(**request("hi"))
    assert time.monotonic() - started < 2
    assert client(server).messages.create(**request("hi")).content  # other requests still served
    started = time.monotonic()
    server.stop()  # wakes the sleeping hang
    assert time.monotonic() - started < 2
    # The woken handler thread records its closed connection (status 0) as it finishes.
    deadline = time.monotonic() + 5
    while server.stats().by_status != {0: 1, 200: 1} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.stats().by_status == {0: 1, 200: 1}


def test_disconnect_raises_connection_error(make_server):
    server = make_server()
    server.inject("disconnect")
    with pytest.raises(anthropic.APIConnectionError) as err:
        client(server).messages.create(**request("hi"))
    assert not isinstance(err.value, anthropic.APITimeoutError)


@pytest.mark.parametrize("fault", ["invalid_json", "wrong_enum", "missing_field", "extra_field",
                                   "wrong_type", "text_instead"])
def test_malformed_answers(make_server, fault):
    server = make_server()
    server.inject(fault)
    text, label = SAMPLE[1]
    api = client(server)
    if fault == "invalid_json":
        # the SDK does not wrap a 200 body it cannot parse: the JSON decoder's ValueError escapes
        with pytest.raises(json.JSONDecodeError):
            api.messages.create(**request(text))
        return
    content = api.messages.create(**request(text)).content
    if fault == "text_instead":
        assert len(content) == 1 and isinstance(content[0], TextBlock)
        return
    payload = content[0].input
    allowed = set(CATEGORIES) | {"out_of_scope"}
    if fault == "wrong_enum":
        assert payload["intent"] not in allowed
    elif fault == "missing_field":
        assert "intent" not in payload and set(payload) == {"confidence", "summary"}
    elif fault == "extra_field":
        assert payload["intent"] == label and set(payload) - {"intent", "confidence", "summary"}
    elif fault == "wrong_type":
        assert isinstance(payload["confidence"], str)


def test_fault_sequences_rates_schedules_and_runtime_latency(make_server):
    server = make_server()
    server.inject(["overloaded", None, "api_error"])
    server.inject("overloaded", count=2)
    api = client(server)

    def statuses(n, target=server):
        out, target_api = [], client(target)
        for _ in range(n):
            try:
                target_api.messages.create(**request("hi"))
                out.append(200)
            except anthropic.APIStatusError as exc:
                out.append(exc.status_code)
        return out

    assert statuses(6) == [529, 200, 500, 529, 529, 200]
    # rates: a deterministic function of the seed and the request index
    a = make_server(fault_rates={"overloaded": 0.3, "api_error": 0.2})
    b = make_server(fault_rates={"overloaded": 0.3, "api_error": 0.2})
    seq = statuses(40, a)
    assert seq == statuses(40, b)
    assert 4 <= seq.count(529) <= 20 and 2 <= seq.count(500) <= 14
    # a schedule: every third request overloaded
    c = make_server(fault_schedule=lambda i, body: "overloaded" if i % 3 == 2 else None)
    assert statuses(6, c) == [200, 200, 529, 200, 200, 529]
    # latency flipped mid-run
    server.configure(latency_ms=250, jitter_ms=50)
    started = time.monotonic()
    api.messages.create(**request("hi"))
    assert time.monotonic() - started >= 0.25
    assert 0.25 <= server.requests("messages")[-1].duration_s <= 0.3 + 0.5
    with pytest.raises(ValueError):
        server.inject("no_such_fault")
    assert set(FAULT_KINDS) >= {"overloaded", "api_error", "rate_limit", "hang", "invalid_json"}


def gated_oracle(n):
    """The default oracle, but the first n answers wait until all n requests are inside the server."""
    barrier, oracle, calls = threading.Barrier(n), LabelOracle(LABELS), iter(range(10**9))

    def answer(req):
        if next(calls) < n:
            barrier.wait(timeout=10)
        return oracle(req)

    return answer


def test_counters_track_concurrency_models_and_times(make_server):
    server = make_server(oracle=gated_oracle(6))
    outcomes = fire(server, 6)
    assert all(isinstance(o, anthropic.types.Message) for o in outcomes)
    client(server).messages.create(**request("hi", model="claude-other"))
    stats = server.stats()
    assert stats.max_in_flight == 6 and stats.in_flight == 0
    assert stats.by_model == {"claude-test-1": 6, "claude-other": 1}
    assert stats.messages_requests == 7 and stats.requests_total == 7
    assert list(stats.request_times) == sorted(stats.request_times)
    assert stats.messages_rate() > 0
    assert json.loads(json.dumps(stats.to_dict()))["messages_by_status"] == {"200": 7}
    server.reset_stats()
    assert server.stats().requests_total == 0


def test_unknown_model_is_not_found(make_server):
    server = make_server(known_models=frozenset({"claude-test-1"}))
    with pytest.raises(anthropic.NotFoundError):
        client(server).messages.create(**request("hi", model="claude-nope"))


def test_batches_create_poll_and_results_follow_the_configured_rates(make_server):
    server = make_server(batch_delay_s=0.3, batch_errored_rate=0.2, batch_expired_rate=0.1,
                         error_rate=0.1)
    api = client(server)
    texts = list(LABELS.items())[::200][:50]
    requests = [{"custom_id": f"msg-{i}", "params": request(t)} for i, (t, _) in enumerate(texts)]
    requests.append({"custom_id": "broken", "params": {"model": "claude-test-1", "messages": []}})
    batch = api.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 51
    while (batch := api.messages.batches.retrieve(batch.id)).processing_status != "ended":
        time.sleep(0.05)
    assert batch.ended_at is not None and batch.results_url.endswith(f"/{batch.id}/results")

    results = {r.custom_id: r.result for r in api.messages.batches.results(batch.id)}
    assert set(results) == {r["custom_id"] for r in requests}
    assert results["broken"].type == "errored"
    assert results["broken"].error.error.type == "invalid_request_error"
    oracle = LabelOracle(LABELS)
    allowed = CATEGORIES + ["out_of_scope"]
    for i, (text, _) in enumerate(texts):
        result, expected = results[f"msg-{i}"], server.batch_outcome_for(f"msg-{i}")
        assert result.type == expected
        if expected == "succeeded":
            assert intent_of(result.message) == oracle.decide(text, allowed, 0.1).label
            assert result.message.usage.service_tier == "batch"
        elif expected == "errored":
            assert result.error.type == "error" and result.error.error.type == "api_error"
    counts = {k: sum(r.type == k for r in results.values()) for k in ("succeeded", "errored", "expired")}
    assert batch.request_counts.succeeded == counts["succeeded"]
    assert batch.request_counts.errored == counts["errored"]
    assert batch.request_counts.expired == counts["expired"]
    assert 5 <= counts["errored"] <= 20 and 1 <= counts["expired"] <= 12
    assert server.stats().batch_results == {k: v for k, v in counts.items() if v}
    assert [r.custom_id for r in api.messages.batches.results(batch.id)] != [r["custom_id"] for r in requests]
    assert [b.id for b in api.messages.batches.list()] == [batch.id]
    assert api.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        api.messages.batches.retrieve(batch.id)


def test_batch_cancel_and_batch_faults(make_server):
    server = make_server(batch_delay_s=60)
    api = client(server)
    batch = api.messages.batches.create(
        requests=[{"custom_id": f"r{i}", "params": request(t)} for i, (t, _) in enumerate(SAMPLE[:5])])
    assert api.messages.batches.cancel(batch.id).processing_status == "canceling"
    ended = api.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 5
    assert {r.result.type for r in api.messages.batches.results(batch.id)} == {"canceled"}
    # faults on the batch endpoints, and per-item outcomes chosen by a callable
    server.configure(batch_delay_s=0, batch_outcome=lambda cid, params: "wrong_enum" if cid == "r0" else None)
    server.inject("overloaded", endpoint="batches.retrieve")
    batch = api.messages.batches.create(requests=[{"custom_id": "r0", "params": request("hi")}])
    with pytest.raises(anthropic.OverloadedError):
        api.messages.batches.retrieve(batch.id)
    server.finish_batches()
    (only,) = list(api.messages.batches.results(batch.id))
    assert only.result.type == "succeeded"
    assert only.result.message.content[0].input["intent"] not in CATEGORIES


def test_async_client_and_restart_on_the_same_port(make_server):
    server = make_server(oracle=gated_oracle(5))

    async def run():
        api = anthropic.AsyncAnthropic(api_key="t", base_url=server.base_url, max_retries=0, timeout=5)
        got = await asyncio.gather(*(api.messages.create(**request(t)) for t, _ in SAMPLE[:5]))
        await api.close()
        return got

    answers = asyncio.run(run())
    assert [intent_of(m) for m in answers] == [label for _, label in SAMPLE[:5]]
    assert server.stats().max_in_flight == 5
    port = server.port
    server.stop()
    with pytest.raises(anthropic.APIConnectionError):
        client(server).messages.create(**request("hi"))
    server.start()
    assert server.port == port
    assert client(server).messages.create(**request("hi")).content


def test_control_endpoints(make_server):
    server = make_server()

    def call(method, what, body=None):
        req = urllib.request.Request(f"{server.base_url}/_loopback/{what}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    assert call("POST", "faults", {"fault": "overloaded", "count": 2}) == {
        "pending": [["overloaded", "messages"], ["overloaded", "messages"]]}
    assert call("POST", "config", {"latency_ms": 5})["latency_ms"] == 5
    assert server.config.latency_ms == 5
    with pytest.raises(anthropic.OverloadedError):
        client(server).messages.create(**request("hi"))
    assert call("GET", "stats")["messages_by_status"] == {"529": 1}


def test_runs_as_a_module():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ai_assets_tests.doubles.messages_api_server", "--port", "0",
         "--latency-ms", "1", "--fault", "overloaded=0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
        base_url = line.split("listening on ")[1].split()[0]
        api = anthropic.Anthropic(api_key="t", base_url=base_url, max_retries=0, timeout=5)
        text, label = SAMPLE[0]
        assert intent_of(api.messages.create(**request(text))) == label
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert json.loads(out.strip().splitlines()[-1])["messages_by_status"] == {"200": 1}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
