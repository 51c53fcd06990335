"""A loopback HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

Tests, benchmarks and chaos tests point `anthropic.Anthropic(base_url=server.base_url)` at it.
Standard library only: `http.server.ThreadingHTTPServer` on 127.0.0.1, HTTP/1.1 keep-alive.

Endpoints: POST /v1/messages (non-streaming; a forced tool answers a `tool_use` block shaped by
the tool's input_schema, otherwise a text block), POST /v1/messages/count_tokens, and the
Message Batches API (create, list, retrieve, results as JSON Lines at `results_url`, cancel,
delete). Answers come from a deterministic oracle (`LabelOracle` by default).

Injectable behaviour, set at construction and changed at runtime with `configure(...)`
(thread-safe, takes effect for the next request): latency and jitter, token-bucket rate limits
(requests per second / minute, input tokens per minute) answered with 429, `retry-after` and
`anthropic-ratelimit-*` headers, fault rates and a fault schedule, and a fault queue
(`inject("overloaded", count=3)`) for exact sequences. Fault kinds: see FAULT_KINDS.

Run it by hand: `python -m ai_assets_tests.doubles.messages_api_server --port 8765 --latency-ms 300`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ai_assets_tests.doubles.oracle import (
    LabelOracle,
    Oracle,
    OracleRequest,
    estimate_tokens,
    forced_tool,
    label_field_of,
    short_hash,
    unit_hash,
    user_text_of,
)

log = logging.getLogger(__name__)

# Faults answered with an error status: kind -> (HTTP status, error type, message).
ERROR_FAULTS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "rate_limit_error", "This request would exceed your rate limit (injected)."),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "api_error": (500, "api_error", "Internal server error"),
    "unavailable": (503, "api_error", "Service unavailable"),
    "bad_request": (400, "invalid_request_error", "Invalid request (injected)."),
}
# Faults at the connection: `hang` sleeps `hang_s` then closes without answering; `disconnect`
# closes at once.
CONNECTION_FAULTS = ("hang", "disconnect")
# Faults in a 200 answer: an unparseable body, or a message that breaks the tool's schema.
MALFORMED_FAULTS = ("invalid_json", "wrong_enum", "missing_field", "extra_field", "wrong_type",
                    "text_instead")
FAULT_KINDS = tuple(ERROR_FAULTS) + CONNECTION_FAULTS + MALFORMED_FAULTS
BATCH_OUTCOMES = ("succeeded", "errored", "expired", "canceled")
NOT_A_LABEL = "not_an_allowed_label"
ENDPOINTS = ("messages", "count_tokens", "batches.create", "batches.list", "batches.retrieve",
             "batches.results", "batches.cancel", "batches.delete")


@dataclass(frozen=True)
class ServerConfig:
    """Every runtime knob. Change them with `MessagesAPIServer.configure(**changes)`."""

    api_key: str | None = None  # expected key; None accepts any non-empty key
    require_version: bool = True  # 400 when the anthropic-version header is missing
    latency_ms: float = 0.0  # added before every /v1/messages answer (not 401/400/429)
    jitter_ms: float = 0.0  # plus a deterministic 0..jitter_ms per request
    rps: float | None = None  # requests per second (token bucket, burst = rps)
    rpm: float | None = None  # requests per minute (token bucket, burst = rpm)
    tpm: float | None = None  # input tokens per minute (token bucket, charged on admission)
    retry_after_s: float | None = None  # fixed retry-after on 429; None: computed, whole seconds
    retry_after_ms_header: bool = False  # also send retry-after-ms (the SDK prefers it)
    error_rate: float = 0.0  # share of texts the default oracle answers wrongly
    fault_rates: Mapping[str, float] = field(default_factory=dict)  # kind -> share of requests
    fault_schedule: Callable[[int, Mapping[str, Any]], str | None] | None = None  # (index, body)
    hang_s: float = 30.0  # how long a `hang` holds the connection before closing it
    chars_per_token: float = 4.0
    known_models: frozenset[str] | None = None  # other models -> 404 not_found_error
    batch_delay_s: float = 0.2  # a batch ends this long after creation
    batch_errored_rate: float = 0.0
    batch_expired_rate: float = 0.0
    batch_outcome: Callable[[str, Mapping[str, Any]], str | None] | None = None  # (custom_id, params)
    batch_shuffle_results: bool = True  # results not in request order, as the API warns
    seed: int = 0

    def validate(self) -> ServerConfig:
        unknown = set(self.fault_rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        rates = list(self.fault_rates.values()) + [self.error_rate, self.batch_errored_rate,
                                                    self.batch_expired_rate]
        if any(not 0 <= r <= 1 for r in rates):
            raise ValueError("rates must lie in [0, 1]")
        if sum(self.fault_rates.values()) > 1 + 1e-9:
            raise ValueError("fault rates sum to more than 1")
        if self.batch_errored_rate + self.batch_expired_rate > 1 + 1e-9:
            raise ValueError("batch errored + expired rates exceed 1")
        for name in ("rps", "rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        return self


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server saw it (status 0: closed without an answer)."""

    t: float  # time.monotonic() at arrival
    wall: float  # time.time() at arrival
    method: str
    path: str
    endpoint: str
    status: int
    duration_s: float
    request_id: str
    model: str | None = None
    fault: str | None = None
    retry_count: int | None = None  # the SDK's x-stainless-retry-count header
    body: Any = None  # the parsed JSON body of /v1/messages requests


@dataclass(frozen=True)
class ServerStats:
    """A snapshot of the counters (`MessagesAPIServer.stats()`)."""

    requests_total: int
    by_status: dict[int, int]
    by_endpoint: dict[str, int]
    messages_by_status: dict[int, int]
    by_model: dict[str, int]
    by_fault: dict[str, int]
    in_flight: int
    max_in_flight: int  # most /v1/messages requests open at once
    request_times: tuple[float, ...]  # monotonic arrival times of /v1/messages requests
    input_tokens: int  # over successful /v1/messages answers
    output_tokens: int
    batches_created: int
    batch_requests: int
    batch_results: dict[str, int]
    batches_canceled: int

    @property
    def messages_requests(self) -> int:
        return len(self.request_times)

    def messages_rate(self) -> float:
        """Arrivals per second at /v1/messages between the first and the last request."""
        times = self.request_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("request_times")
        out["messages_requests"] = self.messages_requests
        out["messages_rate"] = round(self.messages_rate(), 3)
        for key in ("by_status", "messages_by_status"):
            out[key] = {str(k): v for k, v in out[key].items()}
        return out


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Bucket:
    """A token bucket: `capacity` tokens, refilled at `per_second`."""

    def __init__(self, capacity: float, per_second: float, now: float):
        self.capacity, self.rate, self.level, self.t = capacity, per_second, capacity, now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    def wait(self, cost: float) -> float:
        if cost > self.capacity:
            return math.inf
        return max(0.0, (cost - self.level) / self.rate)

    def reset_in(self) -> float:
        return (self.capacity - self.level) / self.rate


class _Limiter:
    def __init__(self, rps: float | None, rpm: float | None, tpm: float | None):
        now = time.monotonic()
        self.requests = [b for b in (_Bucket(rps, rps, now) if rps else None,
                                     _Bucket(rpm, rpm / 60, now) if rpm else None) if b]
        self.tokens = _Bucket(tpm, tpm / 60, now) if tpm else None
        self.lock = threading.Lock()

    def admit(self, tokens: int) -> tuple[bool, float, dict[str, str]]:
        """(admitted, seconds until it would be, anthropic-ratelimit-* headers)."""
        with self.lock:
            now = time.monotonic()
            pairs = [(b, 1.0) for b in self.requests] + ([(self.tokens, float(tokens))] if self.tokens else [])
            for bucket, _ in pairs:
                bucket.refill(now)
            wait = max((bucket.wait(cost) for bucket, cost in pairs), default=0.0)
            if wait <= 0:
                for bucket, cost in pairs:
                    bucket.level -= cost
            return wait <= 0, wait, self._headers()

    def _headers(self) -> dict[str, str]:
        wall = _utcnow()
        headers: dict[str, str] = {}

        def put(prefix: str, bucket: _Bucket) -> None:
            headers[f"anthropic-ratelimit-{prefix}-limit"] = str(int(bucket.capacity))
            headers[f"anthropic-ratelimit-{prefix}-remaining"] = str(max(0, int(bucket.level)))
            headers[f"anthropic-ratelimit-{prefix}-reset"] = _rfc3339(wall + timedelta(seconds=bucket.reset_in()))

        if self.requests:
            put("requests", self.requests[-1])  # the per-minute bucket when there is one
        if self.tokens:
            put("input-tokens", self.tokens)
            put("tokens", self.tokens)
        return headers


@dataclass
class _Reply:
    status: int
    payload: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    action: str | None = None  # "hang" | "disconnect"


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, {"type": "error", "error": {"type": kind, "message": message}}, headers or {})


def validate_message_params(body: Any) -> str | None:
    """Why a Messages request body is invalid, or None."""
    if not isinstance(body, Mapping):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Field required (a positive integer)"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), (str, list)):
            return f"messages.{i}.content: Field required"
    if messages[0].get("role") != "user":
        return "messages: first message must use the \"user\" role"
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list)
                              or any(not isinstance(t, Mapping) or not t.get("name") for t in tools)):
        return "tools: each tool needs a name"
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "tool":
        if not any(t.get("name") == choice.get("name") for t in tools or []):
            return f"tool_choice: tool {choice.get('name')!r} not found in tools"
    return None


@dataclass
class _Batch:
    id: str
    created: datetime
    requests: list[tuple[str, Mapping[str, Any]]]
    due: float
    status: str = "in_progress"
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    results: list[dict[str, Any]] | None = None
    counts: dict[str, int] = field(default_factory=dict)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the default 5 resets connections under a burst
    owner: MessagesAPIServer

    def handle_error(self, request, client_address):  # quiet about clients that went away
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        log.exception("loopback server: error handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ai-assets-loopback/1"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("loopback %s - %s", self.address_string(), format % args)

    def _handle(self) -> None:
        self.server.owner._handle(self)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle


class MessagesAPIServer:
    """The loopback Messages API. Use as a context manager or with start()/stop().

    `labels` feeds the default `LabelOracle` (text → label mapping, (text, label) pairs,
    `LabelledText` rows, or a callable); `oracle` replaces it with any callable
    `OracleRequest -> dict | str`. `max_records` bounds the request log (`requests()`); the
    counters are never truncated. Every other keyword is a `ServerConfig` field.
    """

    def __init__(self, labels: Any = None, *, oracle: Oracle | None = None,
                 host: str = "127.0.0.1", port: int = 0, max_records: int = 100_000, **config: Any):
        self.oracle: Oracle = oracle if oracle is not None else LabelOracle(labels)
        self.host, self.port = host, port
        self.max_records = max_records
        self._config = ServerConfig(**config).validate()
        self._config_lock = threading.Lock()
        self._limiter = _Limiter(self._config.rps, self._config.rpm, self._config.tpm)
        self._lock = threading.Lock()  # counters, fault queue, ids
        self._faults: collections.deque[tuple[str | None, str]] = collections.deque()
        self._messages_index = 0
        self._request_seq = 0
        self._batch_lock = threading.RLock()
        self._batches: dict[str, _Batch] = {}
        self._batch_seq = 0
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.reset_stats()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MessagesAPIServer:
        """Bind (a free port the first time; the same port after a stop) and serve."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._threads = [
            threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                             name=f"loopback-api-{self.port}", daemon=True),
            threading.Thread(target=self._batch_worker, name=f"loopback-batches-{self.port}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping hangs, close open connections. Safe to call twice."""
        httpd, self._httpd = self._httpd, None
        self._stopping.set()
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> MessagesAPIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._conns_lock:
            (self._conns.add if opened else self._conns.discard)(conn)

    # -- runtime knobs ---------------------------------------------------------------------
    @property
    def config(self) -> ServerConfig:
        return self._config

    def configure(self, **changes: Any) -> ServerConfig:
        """Change knobs for the next requests (thread-safe); rate-limit changes start full buckets."""
        with self._config_lock:
            old = self._config
            new = dataclasses.replace(old, **changes).validate()
            if (new.rps, new.rpm, new.tpm) != (old.rps, old.rpm, old.tpm):
                self._limiter = _Limiter(new.rps, new.rpm, new.tpm)
            self._config = new
            return new

    def inject(self, faults: str | None | Iterable[str | None], count: int = 1, *,
               endpoint: str = "messages") -> None:
        """Queue faults for the next matching requests, in order: `inject("overloaded", 3)`,
        or a sequence such as `inject(["overloaded", None, "hang"])` (None: answer normally).
        `endpoint`: "messages" (default), an entry of ENDPOINTS, "batches" (any batch call)
        or "*". Queued faults come before the schedule and the rates."""
        sequence = [faults] * count if faults is None or isinstance(faults, str) else list(faults)
        bad = [f for f in sequence if f is not None and f not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; known: {FAULT_KINDS}")
        if endpoint not in ENDPOINTS + ("batches", "*"):
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self._lock:
            self._faults.extend((f, endpoint) for f in sequence)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[tuple[str | None, str]]:
        with self._lock:
            return list(self._faults)

    # -- counters --------------------------------------------------------------------------
    def reset_stats(self) -> None:
        with self._lock:
            self._records: collections.deque[RequestRecord] = collections.deque(maxlen=self.max_records)
            self._by_status: collections.Counter[int] = collections.Counter()
            self._by_endpoint: collections.Counter[str] = collections.Counter()
            self._messages_by_status: collections.Counter[int] = collections.Counter()
            self._by_model: collections.Counter[str] = collections.Counter()
            self._by_fault: collections.Counter[str] = collections.Counter()
            self._request_times: list[float] = []
            self._in_flight = 0
            self._max_in_flight = 0
            self._tokens = [0, 0]
            self._batch_counts = collections.Counter()
            self._batch_results: collections.Counter[str] = collections.Counter()

    def stats(self) -> ServerStats:
        with self._lock:
            return ServerStats(
                requests_total=sum(self._by_status.values()),
                by_status=dict(self._by_status), by_endpoint=dict(self._by_endpoint),
                messages_by_status=dict(self._messages_by_status), by_model=dict(self._by_model),
                by_fault=dict(self._by_fault), in_flight=self._in_flight,
                max_in_flight=self._max_in_flight, request_times=tuple(self._request_times),
                input_tokens=self._tokens[0], output_tokens=self._tokens[1],
                batches_created=self._batch_counts["created"],
                batch_requests=self._batch_counts["requests"],
                batch_results=dict(self._batch_results),
                batches_canceled=self._batch_counts["canceled"])

    def requests(self, endpoint: str | None = None) -> list[RequestRecord]:
        """The request log since the last reset (the last `max_records`), optionally of one endpoint."""
        with self._lock:
            return [r for r in self._records if endpoint is None or r.endpoint == endpoint]

    # -- request handling ------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        arrived, wall = time.monotonic(), time.time()
        url = urlsplit(h.path)
        path = url.path.rstrip("/") or "/"
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        with self._lock:
            self._request_seq += 1
            request_id = f"req_{short_hash(self._config.seed, 'request', self._request_seq)}"
        endpoint, batch_id = self._route(h.command, path)
        info: dict[str, Any] = {}
        is_messages = endpoint == "messages"
        if is_messages:
            with self._lock:  # timed under the lock so request_times is in order
                arrived = time.monotonic()
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
                self._request_times.append(arrived)
        try:
            reply = self._respond(h, endpoint, batch_id, url.query, raw, info)
        except Exception as exc:  # an oracle or server bug must still answer
            log.exception("loopback server: %s %s failed", h.command, path)
            reply = _error(500, "api_error", f"loopback server error: {type(exc).__name__}: {exc}")
        if reply.action == "hang":
            self._stopping.wait(self._config.hang_s)
        # Counted before the answer is written, so a client that has its answer sees it counted.
        status = 0 if reply.action else reply.status
        record = RequestRecord(
            t=arrived, wall=wall, method=h.command, path=path, endpoint=endpoint, status=status,
            duration_s=time.monotonic() - arrived, request_id=request_id,
            model=info.get("model"), fault=info.get("fault"),
            retry_count=_int_or_none(h.headers.get("x-stainless-retry-count")),
            body=info.get("body") if is_messages else None)
        with self._lock:
            if is_messages:
                self._in_flight -= 1
                self._messages_by_status[status] += 1
                if record.model:
                    self._by_model[record.model] += 1
                if status == 200 and "usage" in info:
                    self._tokens[0] += info["usage"][0]
                    self._tokens[1] += info["usage"][1]
            if record.fault:
                self._by_fault[record.fault] += 1
            self._by_status[status] += 1
            self._by_endpoint[endpoint] += 1
            self._records.append(record)
        self._send(h, reply, request_id)

    def _send(self, h: _Handler, reply: _Reply, request_id: str) -> int:
        """Write the reply, or close the connection unanswered (hang, disconnect)."""
        if reply.action in ("hang", "disconnect"):
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 0
        if isinstance(reply.payload, bytes):
            data = reply.payload
        else:
            data = json.dumps(reply.payload, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            h.send_response(reply.status, _REASONS.get(reply.status))
            h.send_header("content-type", reply.content_type)
            h.send_header("content-length", str(len(data)))
            h.send_header("request-id", request_id)
            for name, value in reply.headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except OSError:  # the client gave up (timeout) before the answer
            h.close_connection = True
        return reply.status

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None]:
        parts = path.strip("/").split("/")
        if parts[:1] == ["_loopback"]:
            return "control", "/".join(parts[1:])
        if parts[:2] != ["v1", "messages"]:
            return "unknown", None
        rest = parts[2:]
        routes = {
            (): {"POST": "messages"},
            ("count_tokens",): {"POST": "count_tokens"},
            ("batches",): {"POST": "batches.create", "GET": "batches.list"},
        }
        if tuple(rest) in routes:
            return routes[tuple(rest)].get(method, "method_not_allowed"), None
        if len(rest) == 2 and rest[0] == "batches":
            return {"GET": "batches.retrieve", "DELETE": "batches.delete"}.get(method, "method_not_allowed"), rest[1]
        if len(rest) == 3 and rest[0] == "batches" and rest[2] in ("results", "cancel"):
            wanted = "GET" if rest[2] == "results" else "POST"
            return (f"batches.{rest[2]}" if method == wanted else "method_not_allowed"), rest[1]
        return "unknown", None

    def _check_headers(self, h: _Handler, cfg: ServerConfig) -> _Reply | None:
        key = h.headers.get("x-api-key")
        auth = h.headers.get("authorization") or ""
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()  # the SDK (2.x) sends the API key as a Bearer token
        if not key:
            return _error(401, "authentication_error", "x-api-key header is required")
        if cfg.api_key is not None and key != cfg.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if cfg.require_version and not h.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    def _respond(self, h: _Handler, endpoint: str, batch_id: str | None, query: str,
                 raw: bytes, info: dict[str, Any]) -> _Reply:
        cfg = self._config
        if endpoint == "control":
            return self._control(h.command, batch_id or "", raw)
        if endpoint == "unknown":
            return _error(404, "not_found_error", f"Not found: {h.command} {h.path}")
        if endpoint == "method_not_allowed":
            return _error(405, "invalid_request_error", f"Method {h.command} not allowed on {h.path}")
        problem = self._check_headers(h, cfg)
        if problem is not None:
            return problem
        body: Any = None
        if h.command == "POST" and raw:
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return _error(400, "invalid_request_error", "request body is not valid JSON")
        if endpoint == "messages":
            info["body"] = body
            return self._messages(body, cfg, info)
        if endpoint == "count_tokens":
            if not isinstance(body, Mapping) or not isinstance(body.get("messages"), list):
                return _error(400, "invalid_request_error", "messages: Field required")
            return _Reply(200, {"input_tokens": self._input_tokens(body, cfg)})
        # Batch endpoints: only queued faults apply.
        fault = self._next_fault(endpoint, None, None, cfg)
        if fault is not None:
            info["fault"] = fault
            early = self._fault_reply(fault, cfg)
            if early is not None:
                return early
        self._advance_batches()
        if endpoint == "batches.create":
            return self._create_batch(body, cfg)
        if endpoint == "batches.list":
            return self._list_batches(query)
        with self._batch_lock:
            batch = self._batches.get(batch_id or "")
            if batch is None:
                return _error(404, "not_found_error", f"message batch {batch_id!r} not found")
            if endpoint == "batches.retrieve":
                return _Reply(200, self._batch_json(batch))
            if endpoint == "batches.cancel":
                if batch.status == "in_progress":
                    batch.status = "canceling"
                    batch.cancel_initiated_at = _utcnow()
                    with self._lock:
                        self._batch_counts["canceled"] += 1
                return _Reply(200, self._batch_json(batch))
            if endpoint == "batches.delete":
                if batch.status != "ended":
                    return _error(400, "invalid_request_error",
                                  "message batch is still in progress; cancel it first")
                del self._batches[batch.id]
                return _Reply(200, {"id": batch.id, "type": "message_batch_deleted"})
            # results
            if batch.status != "ended" or batch.results is None:
                return _error(400, "invalid_request_error", "message batch is still processing")
            lines = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n"
                            for r in batch.results)
            return _Reply(200, lines.encode(), content_type="application/binary")

    # -- /v1/messages ----------------------------------------------------------------------
    def _input_tokens(self, body: Mapping[str, Any], cfg: ServerConfig) -> int:
        part = {k: body[k] for k in ("system", "messages", "tools", "tool_choice") if k in body}
        return estimate_tokens(part, cfg.chars_per_token)

    def _messages(self, body: Any, cfg: ServerConfig, info: dict[str, Any]) -> _Reply:
        problem = validate_message_params(body)
        if problem is not None:
            return _error(400, "invalid_request_error", problem)
        info["model"] = body["model"]
        if body.get("stream"):
            return _error(400, "invalid_request_error", "stream: the loopback server does not stream")
        if cfg.known_models is not None and body["model"] not in cfg.known_models:
            return _error(404, "not_found_error", f"model: {body['model']}")
        tokens = self._input_tokens(body, cfg)
        admitted, wait, rl_headers = self._limiter.admit(tokens)
        if not admitted:
            info["fault"] = "rate_limited"
            return _error(429, "rate_limit_error",
                          "This request would exceed the rate limit for your organization.",
                          {**rl_headers, **self._retry_after_headers(wait, cfg)})
        with self._lock:
            index = self._messages_index
            self._messages_index += 1
        fault = self._next_fault("messages", index, body, cfg)
        info["fault"] = fault
        if fault in ("rate_limit", "hang", "disconnect"):
            return self._fault_reply(fault, cfg)
        delay = (cfg.latency_ms + cfg.jitter_ms * unit_hash(cfg.seed, "jitter", index)) / 1000
        if delay > 0:
            self._stopping.wait(delay)
        if fault in ERROR_FAULTS:
            reply = self._fault_reply(fault, cfg)
            reply.headers.update(rl_headers)
            return reply
        message = self._build_message(body, cfg, fault, f"{index}", batch=False)
        info["usage"] = (message["usage"]["input_tokens"], message["usage"]["output_tokens"])
        if fault == "invalid_json":
            text = json.dumps(message)
            return _Reply(200, text[: len(text) // 2].encode(), rl_headers)
        return _Reply(200, message, rl_headers)

    def _retry_after_headers(self, wait: float, cfg: ServerConfig) -> dict[str, str]:
        if cfg.retry_after_s is not None:
            value = cfg.retry_after_s
            shown = str(int(value)) if float(value).is_integer() else f"{value:g}"
        else:
            value = 60.0 if math.isinf(wait) else wait
            shown = str(max(1, math.ceil(value)))  # the API sends whole seconds
        headers = {"retry-after": shown}
        if cfg.retry_after_ms_header:
            headers["retry-after-ms"] = str(int(round(value * 1000)))
        return headers

    def _fault_reply(self, fault: str, cfg: ServerConfig) -> _Reply | None:
        if fault in CONNECTION_FAULTS:
            return _Reply(0, action=fault)
        if fault in ERROR_FAULTS:
            status, kind, message = ERROR_FAULTS[fault]
            headers = self._retry_after_headers(1.0, cfg) if status == 429 else {}
            return _error(status, kind, message, headers)
        return None  # malformed kinds only shape a /v1/messages answer

    def _next_fault(self, endpoint: str, index: int | None, body: Any, cfg: ServerConfig) -> str | None:
        with self._lock:
            for i, (fault, target) in enumerate(self._faults):
                if target in (endpoint, "*") or (target == "batches" and endpoint.startswith("batches.")):
                    del self._faults[i]
                    return fault
        if endpoint != "messages" or index is None:
            return None
        if cfg.fault_schedule is not None:
            fault = cfg.fault_schedule(index, body)
            if fault is not None:
                if fault not in FAULT_KINDS:
                    raise ValueError(f"fault_schedule returned unknown fault {fault!r}")
                return fault
        if cfg.fault_rates:
            u, acc = unit_hash(cfg.seed, "fault", index), 0.0
            for kind in sorted(cfg.fault_rates):
                acc += cfg.fault_rates[kind]
                if u < acc:
                    return kind
        return None

    def _build_message(self, body: Mapping[str, Any], cfg: ServerConfig, fault: str | None,
                       key: str, batch: bool) -> dict[str, Any]:
        tool = forced_tool(body)
        label_field, allowed = label_field_of(tool)
        request = OracleRequest(body=body, user_text=user_text_of(body), tool=tool,
                                label_field=label_field, allowed_labels=allowed,
                                error_rate=cfg.error_rate, seed=cfg.seed, batch=batch)
        answer = self.oracle(request)
        content, stop_reason = self._content(answer, tool, label_field, allowed, fault, key, cfg)
        output_tokens = estimate_tokens(content, cfg.chars_per_token)
        if output_tokens > body["max_tokens"]:
            output_tokens, stop_reason = body["max_tokens"], "max_tokens"
        return {
            "id": f"msg_{short_hash(cfg.seed, 'message', 'batch' if batch else 'sync', key)}",
            "type": "message", "role": "assistant", "model": body["model"], "content": content,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens(body, cfg), "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "service_tier": "batch" if batch else "standard"},
        }

    @staticmethod
    def _content(answer: Any, tool: Mapping[str, Any] | None, label_field: str | None,
                 allowed: tuple[str, ...] | None, fault: str | None, key: str,
                 cfg: ServerConfig) -> tuple[list[dict[str, Any]], str]:
        if tool is not None and isinstance(answer, Mapping):
            payload = dict(answer)
            target = label_field or "intent"
            if fault == "text_instead":
                return [{"type": "text", "text": f"I think this message is about {payload.get(target)}."}], "end_turn"
            if fault == "wrong_enum":
                wrong = NOT_A_LABEL
                while allowed and wrong in allowed:
                    wrong += "_x"
                payload[target] = wrong
            elif fault == "missing_field" and payload:
                required = (tool.get("input_schema") or {}).get("required") or []
                victim = target if target in payload else next((r for r in required if r in payload), next(iter(payload)))
                payload.pop(victim)
            elif fault == "extra_field":
                payload["note"] = "An extra field the schema does not allow."
            elif fault == "wrong_type":
                if "confidence" in payload:
                    payload["confidence"] = "very high"
                else:
                    payload[target] = 42
            block = {"type": "tool_use", "id": f"toolu_{short_hash(cfg.seed, 'tool', key)}",
                     "name": tool.get("name"), "input": payload}
            return [block], "tool_use"
        text = answer if isinstance(answer, str) else json.dumps(answer)
        if fault == "wrong_enum":
            text = NOT_A_LABEL
        elif fault in ("missing_field", "extra_field", "wrong_type", "text_instead"):
            text = f"Sure! It is probably {text}, but I am not certain."
        return [{"type": "text", "text": text}], "end_turn"

    # -- batches ---------------------------------------------------------------------------
    def _create_batch(self, body: Any, cfg: ServerConfig) -> _Reply:
        requests = body.get("requests") if isinstance(body, Mapping) else None
        if not isinstance(requests, list) or not requests:
            return _error(400, "invalid_request_error", "requests: at least one request is required")
        seen: set[str] = set()
        items: list[tuple[str, Mapping[str, Any]]] = []
        for i, item in enumerate(requests):
            if not isinstance(item, Mapping):
                return _error(400, "invalid_request_error", f"requests.{i}: must be an object")
            custom_id, params = item.get("custom_id"), item.get("params")
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 64:
                return _error(400, "invalid_request_error", f"requests.{i}.custom_id: 1 to 64 characters")
            if custom_id in seen:
                return _error(400, "invalid_request_error", f"requests.{i}.custom_id: duplicate {custom_id!r}")
            if not isinstance(params, Mapping):
                return _error(400, "invalid_request_error", f"requests.{i}.params: Field required")
            seen.add(custom_id)
            items.append((custom_id, params))
        with self._batch_lock:
            self._batch_seq += 1
            batch = _Batch(id=f"msgbatch_{short_hash(cfg.seed, 'batch', self._batch_seq)}",
                           created=_utcnow(), requests=items,
                           due=time.monotonic() + cfg.batch_delay_s)
            self._batches[batch.id] = batch
        with self._lock:
            self._batch_counts["created"] += 1
            self._batch_counts["requests"] += len(items)
        return _Reply(200, self._batch_json(batch))

    def _list_batches(self, query: str) -> _Reply:
        params = parse_qs(query)
        limit = max(1, min(1000, _int_or_none((params.get("limit") or ["20"])[0]) or 20))
        after = (params.get("after_id") or [None])[0]
        with self._batch_lock:
            batches = list(reversed(self._batches.values()))  # newest first
            if after:
                ids = [b.id for b in batches]
                batches = batches[ids.index(after) + 1:] if after in ids else []
            page = [self._batch_json(b) for b in batches[:limit]]
            has_more = len(batches) > limit
        return _Reply(200, {"data": page, "has_more": has_more,
                            "first_id": page[0]["id"] if page else None,
                            "last_id": page[-1]["id"] if page else None})

    def _batch_json(self, batch: _Batch) -> dict[str, Any]:
        ended = batch.status == "ended"
        counts = {k: batch.counts.get(k, 0) for k in BATCH_OUTCOMES}
        counts["processing"] = 0 if ended else len(batch.requests)
        return {
            "id": batch.id, "type": "message_batch", "processing_status": batch.status,
            "request_counts": counts,
            "ended_at": _rfc3339(batch.ended_at) if batch.ended_at else None,
            "created_at": _rfc3339(batch.created),
            "expires_at": _rfc3339(batch.created + timedelta(hours=24)),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at) if batch.cancel_initiated_at else None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def batch_outcome_for(self, custom_id: str, params: Mapping[str, Any] | None = None) -> str:
        """The outcome the server will give this custom_id (for tests to predict results)."""
        cfg = self._config
        if cfg.batch_outcome is not None:
            outcome = cfg.batch_outcome(custom_id, params or {})
            if outcome is not None:
                return outcome
        u = unit_hash(cfg.seed, "batch-outcome", custom_id)
        if u < cfg.batch_errored_rate:
            return "errored"
        if u < cfg.batch_errored_rate + cfg.batch_expired_rate:
            return "expired"
        return "succeeded"

    def _batch_worker(self) -> None:
        while not self._stopping.wait(0.02):
            try:
                self._advance_batches()
            except Exception:  # keep the worker alive; the failing batch is logged
                log.exception("loopback server: batch processing failed")

    def _advance_batches(self) -> None:
        now = time.monotonic()
        with self._batch_lock:
            for batch in list(self._batches.values()):
                if batch.status == "canceling" or (batch.status == "in_progress" and now >= batch.due):
                    self._finish_batch(batch)

    def finish_batches(self) -> None:
        """End every in-progress batch now (tests that do not want to wait)."""
        with self._batch_lock:
            for batch in self._batches.values():
                batch.due = 0.0
        self._advance_batches()

    def _finish_batch(self, batch: _Batch) -> None:
        cfg = self._config
        results = []
        for custom_id, params in batch.requests:
            outcome = "canceled" if batch.status == "canceling" else self.batch_outcome_for(custom_id, params)
            if outcome not in BATCH_OUTCOMES and outcome not in MALFORMED_FAULTS:
                raise ValueError(f"batch outcome {outcome!r} is not one of {BATCH_OUTCOMES + MALFORMED_FAULTS}")
            result: dict[str, Any]
            if outcome in ("expired", "canceled"):
                result = {"type": outcome}
            elif outcome == "errored":
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "api_error", "message": "Internal server error (injected batch error)."},
                    "request_id": None}}
            else:
                problem = validate_message_params(params)
                if problem is not None:
                    outcome = "errored"
                    result = {"type": "errored", "error": {"type": "error", "error": {
                        "type": "invalid_request_error", "message": problem}, "request_id": None}}
                else:
                    fault = outcome if outcome in MALFORMED_FAULTS and outcome != "invalid_json" else None
                    outcome = "succeeded"
                    message = self._build_message(params, cfg, fault, f"{batch.id}/{custom_id}", batch=True)
                    result = {"type": "succeeded", "message": message}
            batch.counts[outcome] = batch.counts.get(outcome, 0) + 1
            results.append({"custom_id": custom_id, "result": result})
            with self._lock:
                self._batch_results[outcome] += 1
        if cfg.batch_shuffle_results:
            results.sort(key=lambda r: unit_hash(cfg.seed, "order", batch.id, r["custom_id"]))
        batch.results = results
        batch.status = "ended"
        batch.ended_at = _utcnow()

    # -- control endpoints (no auth; loopback only) ----------------------------------------
    _SIMPLE_FIELDS = {f.name for f in dataclasses.fields(ServerConfig)} - {
        "fault_schedule", "batch_outcome", "known_models"}

    def _control(self, method: str, what: str, raw: bytes) -> _Reply:
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "control body is not valid JSON")
        try:
            if what == "stats" and method == "GET":
                return _Reply(200, self.stats().to_dict())
            if what == "config" and method == "GET":
                return _Reply(200, {k: v for k, v in dataclasses.asdict(self._config).items()
                                    if k in self._SIMPLE_FIELDS})
            if what == "config" and method == "POST":
                unknown = set(body) - self._SIMPLE_FIELDS
                if unknown:
                    return _error(400, "invalid_request_error", f"not settable here: {sorted(unknown)}")
                cfg = self.configure(**body)
                return _Reply(200, {k: v for k, v in dataclasses.asdict(cfg).items() if k in self._SIMPLE_FIELDS})
            if what == "faults" and method == "POST":
                faults = body.get("faults", body.get("fault"))
                self.inject(faults, int(body.get("count", 1)), endpoint=body.get("endpoint", "messages"))
                return _Reply(200, {"pending": [list(p) for p in self.pending_faults()]})
            if what == "reset" and method == "POST":
                self.reset_stats()
                return _Reply(200, {"ok": True})
        except (TypeError, ValueError) as exc:
            return _error(400, "invalid_request_error", str(exc))
        return _error(404, "not_found_error", f"no control endpoint {method} /_loopback/{what}")


_REASONS = {429: "Too Many Requests", 529: "Overloaded", 500: "Internal Server Error",
            503: "Service Unavailable", 401: "Unauthorized", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 200: "OK"}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_fault(spec: str) -> tuple[str, float]:
    kind, _, rate = spec.partition("=")
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
    try:
        return kind, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fault wants KIND=RATE, got {spec!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ai_assets_tests.doubles.messages_api_server",
        description="A loopback Anthropic Messages API (and batches) with a BANKING77 oracle and "
                    "injectable faults. Runtime control: GET /_loopback/stats, GET|POST "
                    "/_loopback/config, POST /_loopback/faults {\"fault\": \"overloaded\", "
                    "\"count\": 3}, POST /_loopback/reset.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--api-key", help="the only key accepted (default: any non-empty key)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--rps", type=float, help="requests per second")
    parser.add_argument("--rpm", type=float, help="requests per minute")
    parser.add_argument("--tpm", type=float, help="input tokens per minute")
    parser.add_argument("--retry-after", type=float, dest="retry_after_s",
                        help="fixed retry-after seconds on 429 (default: computed)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of wrong labels")
    parser.add_argument("--fault", action="append", type=_parse_fault, default=[],
                        metavar="KIND=RATE", help=f"fault rate; kinds: {', '.join(FAULT_KINDS)}")
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--batch-delay", type=float, default=2.0, dest="batch_delay_s")
    parser.add_argument("--batch-errored-rate", type=float, default=0.0)
    parser.add_argument("--batch-expired-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-banking77", action="store_true",
                        help="no text→label mapping: every text gets out_of_scope")
    parser.add_argument("--stats-every", type=float, default=0.0, help="print stats every N seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    labels = None
    if not args.no_banking77:
        from ai_assets_tests.doubles.oracle import banking77_labels

        labels = banking77_labels()
    server = MessagesAPIServer(
        labels, host=args.host, port=args.port, api_key=args.api_key, latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms, rps=args.rps, rpm=args.rpm, tpm=args.tpm,
        retry_after_s=args.retry_after_s, error_rate=args.error_rate, fault_rates=dict(args.fault),
        hang_s=args.hang_s, batch_delay_s=args.batch_delay_s,
        batch_errored_rate=args.batch_errored_rate, batch_expired_rate=args.batch_expired_rate,
        seed=args.seed)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    server.start()
    print(f"loopback Messages API listening on {server.base_url} "
          f"({len(labels or {})} known texts); Ctrl-C stops", flush=True)
    try:
        while not done.wait(args.stats_every or 3600):
            if args.stats_every:
                print(json.dumps(server.stats().to_dict()), flush=True)
    finally:
        server.stop()
        print(json.dumps(server.stats().to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
