"""Reviewer accounts: memory-hard password hashes, sign-in with rate limiting, disable, list.

- Passwords are kept only as scrypt hashes (`hashlib.scrypt`, memory-hard: n=2**15, r=8 means
  32 MiB per guess, which makes GPU guessing of a stolen table expensive), stored as
  `scrypt$n$r$p$salt_b64$hash_b64` so the cost can be raised later without breaking old rows.
  Verification compares in constant time (`hmac.compare_digest`).
- Sign-in is rate limited through `login_attempts`, shared by every process of the app: after
  `MAX_FAILURES_PER_NAME` failures for one name, or `MAX_FAILURES_PER_IP` from one client address,
  within `LOCKOUT_WINDOW`, sign-in is refused (`LoginLocked`) even with the right password until
  the window has passed. An unknown name costs the same scrypt work as a known one, so the time
  of an answer does not tell which names exist; a disabled account answers like a wrong password.
- A session is bound to `password_changed_at` (see `Account.session_stamp`): changing a password
  ends every session of that account.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ai_assets.ops_db.cases import PIPELINE_ACTOR_PREFIX
from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import LoginAttempt, Reviewer, ReviewerRole
from ai_assets.ops_db.types import utcnow

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_DKLEN = 32
SALT_BYTES = 16
# Bounds on the parameters read back from a stored hash: a tampered row must not make a
# verification allocate gigabytes or spin for minutes.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # a sanity cap on what is hashed, not a policy

LOCKOUT_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_IP = 20
ATTEMPT_RETENTION = timedelta(days=1)  # older attempts of the keys in use are deleted


class AccountError(ValueError):
    """A bad name, role or password, an unknown or duplicate account: the message says which."""


class LoginLocked(RuntimeError):
    """Too many failed sign-ins for this name or client address: refused until `retry_after_s`."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"too many failed sign-ins: try again in {max(1, retry_after_s // 60)} minute(s)")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Account:
    """A reviewer as the app sees one: never the password hash."""

    name: str
    role: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime

    @property
    def session_stamp(self) -> str:
        """Changes whenever the password does: a session signed with an older stamp is void."""
        return f"{self.password_changed_at.timestamp():.6f}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses work above `maxmem`; 128 * n * r bytes is what the parameters need.
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=2 * 128 * n * r + 2**20)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt_b64$hash_b64` of `password` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, SCRYPT_DKLEN)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`; False (never an exception) for a malformed hash."""
    try:
        scheme, n_s, r_s, p_s, salt_b64, hash_b64 = stored.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, expected = base64.b64decode(salt_b64, validate=True), base64.b64decode(hash_b64, validate=True)
    except (ValueError, TypeError, AttributeError):
        return False
    if (scheme != "scrypt" or not (2 <= n <= _MAX_N) or n & (n - 1) or not (1 <= r <= _MAX_R)
            or not (1 <= p <= _MAX_P) or not salt or not (16 <= len(expected) <= 64)):
        return False
    actual = _scrypt(password, salt, n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash(n: int = SCRYPT_N) -> str:
    """Verified against when the name is unknown, so that answer costs the same time."""
    return hash_password(secrets.token_urlsafe(16), n=n)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise AccountError("a reviewer name is 1 to 64 characters of letters, digits, '_', '.' and '-'")
    if name.lower().startswith(PIPELINE_ACTOR_PREFIX):
        # Case changes by this name would read as the pipeline's own (ops_db.cases).
        raise AccountError(f"a reviewer name may not start with {PIPELINE_ACTOR_PREFIX!r}")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    return password


def check_role(role: str) -> str:
    roles = [r.value for r in ReviewerRole]
    if role not in roles:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(roles)}")
    return role


def _account(row: Reviewer) -> Account:
    return Account(row.name, row.role, row.disabled, row.created_at, row.password_changed_at)


def _name_key(name: str) -> str:
    return f"name:{name}"


def _ip_key(client_ip: str | None) -> str:
    return f"ip:{(client_ip or 'unknown')[:190]}"


class ReviewerAccounts:
    """The `reviewers` and `login_attempts` tables."""

    def __init__(self, sessions: Sessions, *, window: timedelta = LOCKOUT_WINDOW,
                 max_failures_per_name: int = MAX_FAILURES_PER_NAME, max_failures_per_ip: int = MAX_FAILURES_PER_IP,
                 scrypt_n: int = SCRYPT_N):
        """`scrypt_n`: the cost of hashes made here (new accounts, new passwords); verification
        always uses the cost stored with each hash. Lower it only where speed matters more than
        resistance to guessing (tests)."""
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or scrypt_n > _MAX_N:
            raise ValueError(f"scrypt_n must be a power of two from 2 to {_MAX_N}")
        self._sessions = sessions
        self._scrypt_n = scrypt_n
        self._window = window
        self._max_name = max_failures_per_name
        self._max_ip = max_failures_per_ip

    def add(self, name: str, role: str, password: str) -> Account:
        check_name(name)
        check_role(role)
        check_password(password)
        now = utcnow()
        row = Reviewer(name=name, role=role, password_hash=hash_password(password, n=self._scrypt_n), disabled=False,
                       created_at=now, password_changed_at=now)
        try:
            with self._sessions.write() as s:
                if s.scalar(select(func.count()).select_from(Reviewer).where(Reviewer.name == name)):
                    raise AccountError(f"reviewer {name!r} exists already")
                s.add(row)
        except IntegrityError:  # added by someone else meanwhile
            raise AccountError(f"reviewer {name!r} exists already") from None
        return _account(row)

    def get(self, name: str) -> Account | None:
        with self._sessions.read() as s:
            row = s.scalar(select(Reviewer).where(Reviewer.name == name))
        return _account(row) if row is not None else None

    def list(self) -> list[Account]:
        with self._sessions.read() as s:
            return [_account(r) for r in s.scalars(select(Reviewer).order_by(Reviewer.name))]

    def set_password(self, name: str, password: str) -> None:
        """A new password; every session signed before it ends."""
        check_password(password)
        hashed = hash_password(password, n=self._scrypt_n)
        with self._sessions.write() as s:
            done = s.execute(update(Reviewer).where(Reviewer.name == name)
                             .values(password_hash=hashed, password_changed_at=utcnow()))
            if done.rowcount != 1:
                raise AccountError(f"no reviewer {name!r}")

    def disable(self, name: str) -> None:
        """The account can no longer sign in; its open sessions are refused at their next request."""
        self._set_disabled(name, True)

    def enable(self, name: str) -> None:
        self._set_disabled(name, False)

    def _set_disabled(self, name: str, disabled: bool) -> None:
        with self._sessions.write() as s:
            done = s.execute(update(Reviewer).where(Reviewer.name == name).values(disabled=disabled))
            if done.rowcount != 1:
                raise AccountError(f"no reviewer {name!r}")

    def locked_for(self, name: str, client_ip: str | None) -> int:
        """Seconds until sign-in is possible again for this name and address; 0 when it is now."""
        since = utcnow() - self._window
        waits = []
        with self._sessions.read() as s:
            for key, limit in ((_name_key(name), self._max_name), (_ip_key(client_ip), self._max_ip)):
                query = select(LoginAttempt.at).where(LoginAttempt.key == key, LoginAttempt.at >= since)
                if key.startswith("name:"):
                    # A success clears a name's count: its owner got in, the failures were typos.
                    last_ok = s.scalar(select(func.max(LoginAttempt.at)).where(
                        LoginAttempt.key == key, LoginAttempt.succeeded.is_(True), LoginAttempt.at >= since))
                    if last_ok is not None:
                        query = query.where(LoginAttempt.at > last_ok)
                failures = list(s.scalars(query.where(LoginAttempt.succeeded.is_(False))
                                          .order_by(LoginAttempt.at.desc()).limit(limit)))
                if len(failures) >= limit:
                    # Locked until the oldest of the last `limit` failures leaves the window.
                    waits.append(int((failures[-1] + self._window - utcnow()).total_seconds()) + 1)
        return max(waits, default=0)

    def authenticate(self, name: str, password: str, client_ip: str | None) -> Account | None:
        """The account when name and password match an enabled reviewer, else None. Raises
        `LoginLocked` while the name or address is locked out, whatever the password."""
        valid_name = isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None
        password = password if isinstance(password, str) else ""
        wait = self.locked_for(name if valid_name else "", client_ip)
        if wait > 0:
            # The same time as an answer; not recorded, so the lock ends one window after the
            # failures that caused it even while someone keeps trying.
            verify_password(password[:MAX_PASSWORD_CHARS], _dummy_hash(self._scrypt_n))
            raise LoginLocked(wait)
        row = None
        if valid_name:
            with self._sessions.read() as s:
                row = s.scalar(select(Reviewer).where(Reviewer.name == name))
        stored = row.password_hash if row is not None else _dummy_hash(self._scrypt_n)
        matches = len(password) <= MAX_PASSWORD_CHARS and verify_password(password, stored)
        ok = matches and row is not None and not row.disabled
        self._record(name if valid_name else None, client_ip, succeeded=ok)
        return _account(row) if ok else None

    def _record(self, name: str | None, client_ip: str | None, *, succeeded: bool) -> None:
        now = utcnow()
        keys = [_ip_key(client_ip)] + ([_name_key(name)] if name else [])
        with self._sessions.write() as s:
            s.add_all([LoginAttempt(key=key, succeeded=succeeded, at=now) for key in keys])
            # Keep the table small: the rows of these keys that no window can count any more.
            s.execute(delete(LoginAttempt).where(LoginAttempt.key.in_(keys),
                                                 LoginAttempt.at < now - max(ATTEMPT_RETENTION, self._window)))
