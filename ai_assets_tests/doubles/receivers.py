"""Real receivers on loopback for the outbox's transports: an SMTP server and a webhook endpoint.

`SmtpReceiver` is aiosmtpd's SMTP server on 127.0.0.1, `WebhookReceiver` a
`ThreadingHTTPServer`; both pick an ephemeral port on the first `start()` and keep it, so
`stop()` then `start()` is "the server went down, then came back" at the same address.
They record what they accepted (thread-safe) and count duplicates by idempotency key,
and can be told to refuse the next n requests.

    with SmtpReceiver() as smtp, WebhookReceiver() as hooks:
        transports = {"email": SmtpMailer("127.0.0.1", smtp.port), "webhook": WebhookPoster(hooks.url)}
"""

from __future__ import annotations

import collections
import email
import email.policy
import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def _duplicates(keys: list[str]) -> dict[str, int]:
    return {key: n for key, n in collections.Counter(keys).items() if n > 1}


@dataclass(frozen=True)
class ReceivedMail:
    message_id: str | None
    mail_from: str
    to: tuple[str, ...]  # envelope recipients
    subject: str
    body: str
    headers: dict[str, str]
    raw: bytes


class _SocketController(Controller):
    """aiosmtpd's threaded Controller serving on a socket we bound: port 0 gives an ephemeral
    port without the find-a-free-port race, and SO_REUSEADDR lets a restart take it again."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any):
        super().__init__(handler, hostname=HOST, port=sock.getsockname()[1], **kwargs)
        self._sock = sock

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class _SmtpHandler:
    def __init__(self, receiver: SmtpReceiver):
        self._receiver = receiver

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        self._receiver._record_rcpt(address)
        refusal = self._receiver._recipient_refusal(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        return self._receiver._on_data(envelope)


class SmtpReceiver:
    """A real SMTP server on 127.0.0.1. With `credentials` ({login: password}) it requires AUTH
    (PLAIN/LOGIN, no TLS: loopback only)."""

    def __init__(self, port: int = 0, credentials: Mapping[str, str] | None = None):
        self._port = port
        self._credentials = dict(credentials) if credentials is not None else None
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._rejections: collections.deque[str] = collections.deque()
        self._refused_recipients: dict[str, str] = {}
        self._rcpts: list[str] = []
        self._refused = 0
        self._controller: _SocketController | None = None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("start() the receiver first: its port is chosen then")
        return self._port

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpReceiver:
        if self._controller is not None:
            raise RuntimeError("already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        kwargs: dict[str, Any] = {}
        if self._credentials is not None:
            kwargs = dict(authenticator=self._authenticate, auth_required=True, auth_require_tls=False)
        controller = _SocketController(_SmtpHandler(self), sock, **kwargs)
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpReceiver:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert self._credentials is not None
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            if login in self._credentials and self._credentials[login] == auth_data.password.decode("utf-8", "replace"):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def reject_next(self, n: int = 1, reply: str = "451 4.3.0 try again later") -> None:
        """Answer the next n messages' DATA with `reply` (4xx: come back later; 5xx: refused)."""
        with self._lock:
            self._rejections.extend([reply] * n)

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 no such mailbox") -> None:
        """Answer RCPT TO:<address> with `reply` from now on."""
        with self._lock:
            self._refused_recipients[address.lower()] = reply

    def _record_rcpt(self, address: str) -> None:
        with self._lock:
            self._rcpts.append(address)

    @property
    def rcpts(self) -> list[str]:
        """Every RCPT TO address a client named, accepted or not, in order: what an attacker
        would need to reach, whether or not the message then went through."""
        with self._lock:
            return list(self._rcpts)

    def _recipient_refusal(self, address: str) -> str | None:
        with self._lock:
            return self._refused_recipients.get(address.lower())

    def _on_data(self, envelope) -> str:
        with self._lock:
            if self._rejections:
                self._refused += 1
                return self._rejections.popleft()
        raw = bytes(envelope.original_content or envelope.content)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        mail = ReceivedMail(message_id=msg["Message-ID"], mail_from=envelope.mail_from,
                            to=tuple(envelope.rcpt_tos), subject=str(msg["Subject"] or ""),
                            body=body.get_content().replace("\r\n", "\n") if body is not None else "",
                            headers={k: str(v) for k, v in msg.items()}, raw=raw)
        with self._lock:
            self._messages.append(mail)
        return "250 OK"

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    @property
    def refused(self) -> int:
        """Messages answered with a `reject_next` reply."""
        with self._lock:
            return self._refused

    def message_ids(self) -> list[str]:
        return [m.message_id or "" for m in self.messages]

    def duplicates(self) -> dict[str, int]:
        """Message-IDs accepted more than once, with their counts."""
        return _duplicates(self.message_ids())

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._rcpts.clear()


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass(frozen=True)
class _Failure:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


class _HookHandler(BaseHTTPRequestHandler):
    server: _HookServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        receiver = self.server.receiver
        failure, stall = receiver._next_answer()
        if stall:
            receiver._release.wait()  # never answered: the client times out
            self.close_connection = True
            return
        status = failure.status if failure else 200
        receiver._record(ReceivedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
        payload = failure.body if failure else b'{"ok":true}'
        self.send_response(status)
        for name, value in failure.headers if failure else ():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json" if not failure else "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the records
        pass


class _HookServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], receiver: WebhookReceiver):
        self.receiver = receiver
        super().__init__(address, _HookHandler)


class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that accepts POSTs (200) and records them."""

    def __init__(self, port: int = 0, path: str = "/hooks"):
        self._port = port
        self.path = path
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._failures: collections.deque[_Failure] = collections.deque()
        self._stalls = 0
        self._release = threading.Event()
        self._server: _HookServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("start() the receiver first: its port is chosen then")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    def start(self) -> WebhookReceiver:
        if self._server is not None:
            raise RuntimeError("already running")
        self._release.clear()
        server = _HookServer((HOST, self._port), self)
        self._port = server.server_address[1]
        # A short poll interval: stop() (shutdown) waits up to one of them.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"webhook-receiver-{self._port}", daemon=True)
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> WebhookReceiver:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, n: int = 1, status: int = 503, body: str = "",
                  headers: Mapping[str, str] | None = None) -> None:
        """Answer the next n requests with `status` (and `body`, `headers`, e.g. Retry-After)."""
        failure = _Failure(status, body.encode(), tuple((headers or {}).items()))
        with self._lock:
            self._failures.extend([failure] * n)

    def stall_next(self, n: int = 1) -> None:
        """Hold the next n requests without answering until `release()` or `stop()`."""
        with self._lock:
            self._stalls += n

    def release(self) -> None:
        self._release.set()

    def _next_answer(self) -> tuple[_Failure | None, bool]:
        with self._lock:
            if self._stalls:
                self._stalls -= 1
                return None, True
            return (self._failures.popleft() if self._failures else None), False

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every answered request, failures included."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[ReceivedRequest]:
        """The accepted (2xx) requests."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def keys(self) -> list[str]:
        return [r.idempotency_key or "" for r in self.events]

    def duplicates(self) -> dict[str, int]:
        """Idempotency keys accepted more than once, with their counts."""
        return _duplicates(self.keys())

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


__all__ = ["ReceivedMail", "ReceivedRequest", "SmtpReceiver", "WebhookReceiver"]
