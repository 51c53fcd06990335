"""The review app's defences, kept apart from its pages so each can be read and tested alone.

- Sessions: a signed cookie (itsdangerous, HMAC-SHA256, timestamped) holding the reviewer's
  name, their password stamp and the session's CSRF token — nothing secret, nothing the app
  trusts without checking: the account is re-read on every request (a disabled account or a
  changed password ends its sessions at once), and a cookie older than the maximum age is
  refused. HttpOnly, SameSite=Strict, Secure (and the `__Host-` name prefix) behind TLS.
- CSRF: every form carries the session's token (the sign-in form a token of its own cookie);
  every POST is checked in constant time. Every POST must also come from the app's own origin
  (or a configured one): `Origin`, else `Referer`; a POST with neither is refused.
- Headers on every response: a strict CSP (no inline script or style anywhere), nosniff,
  same-origin referrers, no framing; `no-store` on everything but the static files.
- Forms are read here, not by python-multipart: only `application/x-www-form-urlencoded`, at
  most `MAX_FORM_BYTES`, UTF-8, a bounded number of fields.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 50
MIN_SECRET_KEY_CHARS = 16
FLASH_MAX_AGE_S = 120
LOGIN_FORM_MAX_AGE_S = 3600


@dataclass(frozen=True)
class CookieNames:
    session: str
    login: str
    flash: str

    @classmethod
    def for_app(cls, secure: bool) -> CookieNames:
        # `__Host-`: the browser only accepts it Secure, on path /, with no Domain — a sibling
        # subdomain cannot plant or overwrite it.
        prefix = "__Host-" if secure else ""
        return cls(f"{prefix}review_session", f"{prefix}review_login", f"{prefix}review_flash")


class Signer:
    """Signed, timestamped JSON values, one salt per purpose (a flash cookie is no session)."""

    def __init__(self, secret_key: str, purpose: str):
        if not isinstance(secret_key, str) or len(secret_key) < MIN_SECRET_KEY_CHARS:
            raise ValueError(f"the review app's secret key needs at least {MIN_SECRET_KEY_CHARS} characters")
        self._serializer = URLSafeTimedSerializer(secret_key, salt=f"ai_assets.review.{purpose}",
                                                  signer_kwargs={"digest_method": hashlib.sha256})

    def dump(self, value: Any) -> str:
        return self._serializer.dumps(value)

    def load(self, token: str | None, max_age_s: int) -> Any | None:
        """The value, or None when missing, tampered with or older than `max_age_s`."""
        if not token or len(token) > 4096:
            return None
        try:
            return self._serializer.loads(token, max_age=max_age_s)
        except (BadSignature, ValueError, TypeError):  # SignatureExpired is a BadSignature
            return None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: object) -> bool:
    return (isinstance(expected, str) and isinstance(given, str) and bool(expected)
            and hmac.compare_digest(expected.encode(), given.encode()))


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origin(request: Request) -> str:
    """scheme://host[:port] as the browser addressed the app (behind a proxy with
    --proxy-headers, the scheme is the proxy's; the proxy must pass the Host header on)."""
    host = request.headers.get("host") or (f"{request.url.hostname}:{request.url.port}"
                                           if request.url.port else str(request.url.hostname))
    return f"{request.url.scheme}://{host}".lower()


def check_origin(request: Request, allowed: Iterable[str]) -> None:
    """Refuses (403) a POST that does not come from one of the app's pages."""
    accepted = {own_origin(request), *(a.lower().rstrip("/") for a in allowed)}
    origin = request.headers.get("origin")
    if origin is not None:
        if origin.lower().rstrip("/") not in accepted:  # includes the opaque origin "null"
            raise HTTPException(403, "cross-site request refused (Origin)")
        return
    referer = request.headers.get("referer")
    if referer is None:
        raise HTTPException(403, "request refused: neither Origin nor Referer")
    if _origin_of(referer) not in accepted:
        raise HTTPException(403, "cross-site request refused (Referer)")


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body as {name: first value}; 400/413/415 on anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise HTTPException(415, "forms are sent as application/x-www-form-urlencoded")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise HTTPException(413, "form too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "unreadable form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def safe_next(target: str | None, default: str = "/queue") -> str:
    """A local path to go to after sign-in; anything that could leave the app becomes `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 for c in target) or len(target) > 2000:
        return default
    return target


class SecurityHeaders:
    """Pure ASGI middleware: the headers every response of the app carries."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False):
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Frame-Options"] = "DENY"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers["Cache-Control"] = "public, max-age=3600" if static else "no-store"
                if self.hsts:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, with_headers)
