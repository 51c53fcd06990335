"""The reviewers' web app: a Starlette application, server-rendered with Jinja2 (autoescape on,
no `|safe` anywhere: message text and model output are untrusted), static JS/CSS from the
package (no CDN: it works offline), every page behind a session.

    app = create_app(db, Settings.from_env(), secret_key=secret("AI_ASSETS_REVIEW_SECRET_KEY"))
    uvicorn.run(app, host="127.0.0.1", port=8787)      # `ai-assets review` does this

Pages: /login, /logout (POST), /queue (filters, counts, paging), /items/{id} (+ POST .../decision,
GET .../next to skip), /actions and /actions/{id} (+ POST .../override; seniors and admins),
/healthz (no session, no data). Database work runs in Starlette's thread pool, off the event loop.
The defences are in `security.py`. Signing out ends the session in this process at once (a copy of
the cookie is refused); other processes of the app refuse it when it expires. The filter bar's
counts are reused for `COUNTS_TTL_S` seconds per filter (this process's decisions clear them); the
list, its total and every item page are read fresh.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ai_assets.config import Settings
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.tables import Compensation, DecisionKind, ReviewerRole, ReviewStatus
from ai_assets.review.accounts import Account, LoginLocked, ReviewerAccounts
from ai_assets.review.decisions import (
    AlreadyDecided,
    DecisionError,
    ItemChanged,
    NotAllowed,
    NotFound,
    record_decision,
)
from ai_assets.review.queue import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    QueueCounts,
    QueueFilter,
    QueueFilterError,
    action_detail,
    automatic_actions,
    counts,
    item_detail,
    labels,
    list_items,
    next_item_id,
)
from ai_assets.review.web.security import (
    FLASH_MAX_AGE_S,
    LOGIN_FORM_MAX_AGE_S,
    CookieNames,
    SecurityHeaders,
    Signer,
    check_origin,
    new_token,
    read_form,
    safe_next,
    tokens_match,
)

HERE = Path(__file__).resolve().parent
SENIOR_ROLES = frozenset({ReviewerRole.SENIOR.value, ReviewerRole.ADMIN.value})
SUGGESTION_KEYS = 5
COUNTS_TTL_S = 5.0
MAX_CACHED_COUNTS = 256


@dataclass(frozen=True)
class Viewer:
    """The signed-in reviewer of one request."""

    name: str
    role: str
    csrf: str

    @property
    def senior(self) -> bool:
        return self.role in SENIOR_ROLES


class _LoginRequired(Exception):
    pass


def _dt(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _when(value: str | datetime | None) -> str:
    """An audit time (ISO text or datetime) to the second, UTC."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text[:19].replace("T", " ")


def _score(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _compact(value: Any) -> str:
    """A JSON document as one line of text (autoescaped like any other text)."""
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(dt=_dt, when=_when, score=_score, compact=_compact)
    return env


class ReviewApp:
    """Routes and their shared state; `create_app` wraps it in a Starlette application."""

    def __init__(self, db: OpsDb, settings: Settings, secret_key: str):
        self.db = db
        self.settings = settings
        self.accounts = ReviewerAccounts(db.sessions)
        self.sessions_signer = Signer(secret_key, "session")
        self.login_signer = Signer(secret_key, "login")
        self.flash_signer = Signer(secret_key, "flash")
        self.cookies = CookieNames.for_app(settings.review_secure_cookies)
        self.max_age_s = int(settings.review_session_max_age_s)
        self.templates = _templates()
        self.labels = labels()
        # Sessions signed out in this process (their CSRF token -> when the cookie expires anyway).
        # The cookie is stateless: without this a copy of it would outlive the sign-out.
        self._signed_out: dict[str, float] = {}
        # The filter bar's counts (one scan of the open items) are reused for COUNTS_TTL_S per
        # filter; this process's own decisions clear them. The list and its total are always fresh.
        self._counts: dict[tuple, tuple[float, QueueCounts]] = {}
        self._counts_lock = threading.Lock()

    # --- cookies, rendering ---------------------------------------------------------------

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                            secure=self.settings.review_secure_cookies)

    def _clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", httponly=True, samesite="strict",
                               secure=self.settings.review_secure_cookies)

    def render(self, request: Request, template: str, *, viewer: Viewer | None, status: int = 200,
               **context: Any) -> HTMLResponse:
        flash = self.flash_signer.load(request.cookies.get(self.cookies.flash), FLASH_MAX_AGE_S)
        flash = flash if isinstance(flash, list) and len(flash) == 2 and all(isinstance(x, str) for x in flash) \
            else None
        html = self.templates.get_template(template).render(viewer=viewer, flash=flash, **context)
        response = HTMLResponse(html, status_code=status)
        if request.cookies.get(self.cookies.flash):
            self._clear_cookie(response, self.cookies.flash)
        return response

    def redirect(self, url: str, *, flash: tuple[str, str] | None = None) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        if flash is not None:
            self._set_cookie(response, self.cookies.flash, self.flash_signer.dump(list(flash)), FLASH_MAX_AGE_S)
        return response

    # --- who is asking ------------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer | None:
        data = self.sessions_signer.load(request.cookies.get(self.cookies.session), self.max_age_s)
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("u", "p", "c")):
            return None
        if data["c"] in self._signed_out:
            return None
        account = await run_in_threadpool(self.accounts.get, data["u"])
        if account is None or account.disabled or account.session_stamp != data["p"]:
            return None
        return Viewer(account.name, account.role, data["c"])

    def guarded(self, handler: Callable[..., Awaitable[Response]], *, roles: frozenset[str] | None = None):
        """The endpoint: POSTs checked for origin first, then the session (pages redirect to
        sign-in, anything else gets 401), the role (403), and for POSTs the CSRF token (403)."""
        async def endpoint(request: Request) -> Response:
            post = request.method == "POST"
            if post:
                check_origin(request, self.settings.review_allowed_origins)
            viewer = await self.viewer(request)
            if viewer is None:
                if post:
                    raise HTTPException(401, "sign in first")
                raise _LoginRequired()
            if roles is not None and viewer.role not in roles:
                raise HTTPException(403, "your role may not see this page")
            if not post:
                return await handler(request, viewer)
            form = await read_form(request)
            if not tokens_match(viewer.csrf, form.get("csrf_token")):
                raise HTTPException(403, "missing or wrong form token: reload the page and try again")
            return await handler(request, viewer, form)
        return endpoint

    # --- sign-in ------------------------------------------------------------------------

    async def login_page(self, request: Request, *, error: str | None = None, status: int = 200,
                         name: str = "") -> Response:
        token = new_token()
        response = self.render(request, "login.html", viewer=None, status=status, error=error, login_token=token,
                               name=name, next=safe_next(request.query_params.get("next")))
        self._set_cookie(response, self.cookies.login, self.login_signer.dump(token), LOGIN_FORM_MAX_AGE_S)
        return response

    async def login_get(self, request: Request) -> Response:
        if await self.viewer(request) is not None:
            return self.redirect(safe_next(request.query_params.get("next")))
        return await self.login_page(request)

    async def login_post(self, request: Request) -> Response:
        check_origin(request, self.settings.review_allowed_origins)
        form = await read_form(request)
        expected = self.login_signer.load(request.cookies.get(self.cookies.login), LOGIN_FORM_MAX_AGE_S)
        if not tokens_match(expected, form.get("csrf_token")):
            raise HTTPException(403, "the sign-in form expired or was not this app's: reload it")
        name, password = form.get("name", "").strip()[:64], form.get("password", "")
        client = request.client.host if request.client else None
        try:
            account: Account | None = await run_in_threadpool(self.accounts.authenticate, name, password, client)
        except LoginLocked as locked:
            return await self.login_page(request, error=str(locked), status=429, name=name)
        if account is None:
            return await self.login_page(request, error="wrong name or password", status=401, name=name)
        response = self.redirect(safe_next(form.get("next")))
        session = {"u": account.name, "p": account.session_stamp, "c": new_token()}
        self._set_cookie(response, self.cookies.session, self.sessions_signer.dump(session), self.max_age_s)
        self._clear_cookie(response, self.cookies.login)
        return response

    async def logout(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        now = time.time()
        self._signed_out = {c: until for c, until in self._signed_out.items() if until > now}
        self._signed_out[viewer.csrf] = now + self.max_age_s
        response = self.redirect("/login", flash=("info", "signed out"))
        self._clear_cookie(response, self.cookies.session)
        return response

    # --- the queue ----------------------------------------------------------------------

    def _filter(self, request: Request, viewer: Viewer) -> QueueFilter:
        try:
            return QueueFilter.from_params(request.query_params, role=viewer.role)
        except QueueFilterError as exc:
            raise HTTPException(400, str(exc)) from None

    @staticmethod
    def _page(request: Request) -> int:
        raw = request.query_params.get("page", "1").strip() or "1"
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise HTTPException(400, f"page: a whole number from 1 to {MAX_PAGE}")
        return int(raw)

    @staticmethod
    def _query(params: dict[str, str], **more: Any) -> str:
        merged = {**params, **{k: str(v) for k, v in more.items() if v is not None}}
        return ("?" + urlencode(merged)) if merged else ""

    async def queue(self, request: Request, viewer: Viewer) -> Response:
        f = self._filter(request, viewer)
        page = self._page(request)

        def read():
            rows, total = list_items(self.db.sessions, f, page, DEFAULT_PAGE_SIZE)
            return rows, total, self._filter_counts(f)

        rows, total, tallies = await run_in_threadpool(read)
        pages = max(1, math.ceil(total / DEFAULT_PAGE_SIZE))
        params = f.params()
        return self.render(request, "queue.html", viewer=viewer, rows=rows, total=total, counts=tallies,
                           filter=f, params=params, page=page, pages=pages, query=self._query(params),
                           prev_query=self._query(params, page=page - 1) if page > 1 else None,
                           next_query=self._query(params, page=page + 1) if page < pages else None)

    def _filter_counts(self, f: QueueFilter) -> QueueCounts:
        key = (tuple(sorted(f.params().items())), f.visible)
        now = time.monotonic()
        with self._counts_lock:
            cached = self._counts.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        fresh = counts(self.db.sessions, f)
        with self._counts_lock:
            if len(self._counts) >= MAX_CACHED_COUNTS:
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
                if len(self._counts) >= MAX_CACHED_COUNTS:
                    self._counts.clear()
            self._counts[key] = (now + COUNTS_TTL_S, fresh)
        return fresh

    def _decided(self) -> None:
        with self._counts_lock:
            self._counts.clear()

    async def home(self, request: Request, viewer: Viewer) -> Response:
        return self.redirect("/queue")

    # --- one item -----------------------------------------------------------------------

    @staticmethod
    def _id(request: Request, name: str) -> int:
        return int(request.path_params[name])

    async def item(self, request: Request, viewer: Viewer) -> Response:
        item_id = self._id(request, "item_id")
        f = self._filter(request, viewer)
        detail = await run_in_threadpool(item_detail, self.db.sessions, item_id)
        if detail is None:
            raise HTTPException(404, f"no review item {item_id}")
        if detail.item["review_queue"] not in f.visible:
            raise HTTPException(403, "items of the senior queue are for senior reviewers and admins")
        query = self._query(f.params())
        return self.render(request, "item.html", viewer=viewer, d=detail, item=detail.item, query=query,
                           open=detail.item["status"] == ReviewStatus.OPEN.value, labels=self.labels,
                           top=detail.suggestions[:SUGGESTION_KEYS], more=detail.suggestions[SUGGESTION_KEYS:],
                           case_version=detail.case["version"] if detail.case else "")

    async def skip(self, request: Request, viewer: Viewer) -> Response:
        item_id = self._id(request, "item_id")
        f = self._filter(request, viewer)
        following = await run_in_threadpool(lambda: next_item_id(self.db.sessions, f, after=item_id))
        query = self._query(f.params())
        if following is None:
            return self.redirect(f"/queue{query}", flash=("info", "no other open item under this filter"))
        return self.redirect(f"/items/{following}{query}")

    async def decide(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        item_id = self._id(request, "item_id")
        f = self._filter(request, viewer)
        query = self._query(f.params())
        kind = form.get("kind", "")
        try:
            seen = int(form.get("item_version", ""))
            case_seen = int(form["case_version"]) if form.get("case_version", "").strip() else None
        except ValueError:
            raise HTTPException(400, "the form's item or case version is not a number: reload the page") from None

        def write() -> tuple[int, int | None]:
            decision_id = record_decision(
                self.db.sessions, reviewer=viewer.name, role=viewer.role, item_id=item_id, kind=kind,
                intent=form.get("intent", "").strip() or None, reason=form.get("reason"),
                item_version_seen=seen, case_version_seen=case_seen)
            self._decided()
            return decision_id, next_item_id(self.db.sessions, f, after=item_id)

        try:
            decision_id, following = await run_in_threadpool(write)
            flash = ("ok", f"item {item_id} decided (decision {decision_id})")
        except AlreadyDecided as exc:
            following = await run_in_threadpool(lambda: next_item_id(self.db.sessions, f, after=item_id))
            flash = ("warning", f"item {item_id}: {exc}")
        except NotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except (ItemChanged, DecisionError) as exc:
            return self.redirect(f"/items/{item_id}{query}", flash=("error", str(exc)))
        if following is None:
            return self.redirect(f"/queue{query}", flash=(flash[0], flash[1] + "; no other open item"))
        return self.redirect(f"/items/{following}{query}", flash=flash)

    # --- automatic actions and overrides --------------------------------------------------

    async def actions(self, request: Request, viewer: Viewer) -> Response:
        page = self._page(request)
        rows, total = await run_in_threadpool(automatic_actions, self.db.sessions, page, DEFAULT_PAGE_SIZE)
        pages = max(1, math.ceil(total / DEFAULT_PAGE_SIZE))
        return self.render(request, "actions.html", viewer=viewer, rows=rows, total=total, page=page, pages=pages,
                           prev_query=f"?page={page - 1}" if page > 1 else None,
                           next_query=f"?page={page + 1}" if page < pages else None)

    async def _action_page(self, request: Request, viewer: Viewer, action_id: int, *, status: int = 200,
                           error: str | None = None, values: dict[str, str] | None = None) -> Response:
        detail = await run_in_threadpool(action_detail, self.db.sessions, action_id)
        if detail is None:
            raise HTTPException(404, f"no automatic action {action_id}")
        live = [d for d in detail.decisions if d["status"] != "conflict"]
        return self.render(request, "action.html", viewer=viewer, d=detail, labels=self.labels, error=error,
                           values=values or {}, overridden=live[-1] if live else None, status=status,
                           compensations=[c.value for c in Compensation],
                           acted=detail.action["outcome"] == "acted",
                           case_version=detail.case["version"] if detail.case else "")

    async def action(self, request: Request, viewer: Viewer) -> Response:
        return await self._action_page(request, viewer, self._id(request, "action_id"))

    async def override(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action_id = self._id(request, "action_id")
        try:
            case_seen = int(form["case_version"]) if form.get("case_version", "").strip() else None
        except ValueError:
            raise HTTPException(400, "the form's case version is not a number: reload the page") from None
        try:
            decision_id = await run_in_threadpool(lambda: record_decision(
                self.db.sessions, reviewer=viewer.name, role=viewer.role, action_id=action_id,
                kind=DecisionKind.OVERRIDE.value, intent=form.get("intent", "").strip() or None,
                reason=form.get("reason"), compensation=form.get("compensation") or None,
                case_version_seen=case_seen))
        except AlreadyDecided as exc:
            return self.redirect(f"/actions/{action_id}", flash=("warning", f"action {action_id}: {exc}"))
        except NotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except DecisionError as exc:
            return await self._action_page(request, viewer, action_id, status=400, error=str(exc), values=form)
        return self.redirect("/actions", flash=("ok", f"override of action {action_id} recorded "
                                                      f"(decision {decision_id}); it is applied by the next run"))

    # --- the rest -----------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "error"
        if request.url.path.startswith("/static/") or "text/html" not in request.headers.get("accept", "text/html"):
            return PlainTextResponse(str(detail), status_code=status)
        viewer = await self.viewer(request) if status != 401 else None
        return self.render(request, "error.html", viewer=viewer, status=status, code=status, message=str(detail))

    async def login_required(self, request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self.redirect(f"/login?{urlencode({'next': safe_next(target)})}")

    def routes(self) -> list:
        g = self.guarded
        senior = SENIOR_ROLES
        return [
            Route("/login", self.login_get, methods=["GET"]),
            Route("/login", self.login_post, methods=["POST"]),
            Route("/logout", g(self.logout), methods=["POST"]),
            Route("/", g(self.home), methods=["GET"]),
            Route("/queue", g(self.queue), methods=["GET"]),
            Route("/items/{item_id:int}", g(self.item), methods=["GET"]),
            Route("/items/{item_id:int}/next", g(self.skip), methods=["GET"]),
            Route("/items/{item_id:int}/decision", g(self.decide), methods=["POST"]),
            Route("/actions", g(self.actions, roles=senior), methods=["GET"]),
            Route("/actions/{action_id:int}", g(self.action, roles=senior), methods=["GET"]),
            Route("/actions/{action_id:int}/override", g(self.override, roles=senior), methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ]


def create_app(db: OpsDb, settings: Settings, *, secret_key: str) -> Starlette:
    """The review app on `db`. `secret_key` signs the cookies (at least 16 characters; from
    `AI_ASSETS_REVIEW_SECRET_KEY`, else random per process: sessions then end at restart)."""
    review = ReviewApp(db, settings, secret_key)
    app = Starlette(routes=review.routes(),
                    exception_handlers={HTTPException: review.http_error, _LoginRequired: review.login_required})
    app.add_middleware(SecurityHeaders, hsts=settings.review_secure_cookies)
    app.state.review = review
    return app
