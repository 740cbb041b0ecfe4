"""Who may see the dashboard and how an action proves it came from one of its own pages.

Access, checked on every request before anything is read:

- ``authorize(request)``, the mounting application's hook (sync or async; falsy refuses with
  403). It sees the Starlette ``Request``, so it can use the app's own session or headers and
  tell reads (``GET``) from actions (``POST``).
- ``token``: a shared secret, sent as ``Authorization: Bearer <token>`` or entered once on the
  login page, which starts a server-side session: the HttpOnly cookie holds a random id (never
  the token, nothing derived from it), expires after ``session_ttl`` and dies at sign-out.
  Wrong tokens are limited per client address (``LOGIN_ATTEMPTS`` a minute).
- ``basic``: ``(user, password)`` checked against HTTP Basic credentials; browsers prompt.

Without any of them, only loopback ``Host`` names are answered (``app.py``): a page on a foreign
name re-pointed at 127.0.0.1 (DNS rebinding) gets nothing.

Actions are ``POST`` only and carry a CSRF token: a random value kept in a ``SameSite=Strict``
HttpOnly cookie that the form must repeat (double submit), compared in constant time; a
request whose ``Origin`` names another host is refused as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

Authorize = Callable[[Request], bool | Awaitable[bool]]

SESSION_COOKIE = "oban_web_session"
#: Seconds a login lasts (a working day).
SESSION_TTL = 12 * 3600.0
CSRF_COOKIE = "oban_web_csrf"
CSRF_FIELD = "_csrf"


#: Wrong tokens one client address may send a minute before the login refuses it for a while.
LOGIN_ATTEMPTS = 5
#: Sessions kept at most; the oldest go first (a flood of logins cannot exhaust memory).
MAX_SESSIONS = 10_000


class Sessions:
    """Server-side sessions: random ids, stored hashed, with an expiry; revoked at sign-out."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        # A seam: tests move time on instead of sleeping through a short ttl.
        self.clock = clock
        self._expires: dict[str, float] = {}

    def create(self) -> str:
        session = secrets.token_urlsafe(32)
        if len(self._expires) >= MAX_SESSIONS:
            del self._expires[next(iter(self._expires))]
        self._expires[_digest(session)] = self.clock() + self.ttl
        return session

    def valid(self, session: str) -> bool:
        key = _digest(session)
        expires = self._expires.get(key)
        if expires is None:
            return False
        if expires < self.clock():
            del self._expires[key]
            return False
        return True

    def revoke(self, session: str) -> None:
        self._expires.pop(_digest(session), None)


class LoginLimiter:
    """Wrong tokens per client address over the last minute."""

    def __init__(self, attempts: int = LOGIN_ATTEMPTS, window: float = 60.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def allowed(self, client: str) -> bool:
        failures = self._failures.get(client)
        if not failures:
            return True
        while failures and failures[0] < time.monotonic() - self.window:
            failures.popleft()
        return len(failures) < self.attempts

    def failed(self, client: str) -> None:
        if len(self._failures) >= MAX_SESSIONS and client not in self._failures:
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(client, deque()).append(time.monotonic())


def _digest(session: str) -> str:
    # Looked up by hash, so the dictionary's timing tells nothing about a stored id.
    return hashlib.sha256(session.encode()).hexdigest()


def secure_request(request: Request, trust_forwarded: bool) -> bool:
    """Whether the browser reached the dashboard over https (its cookies are then ``Secure``);
    a proxy's ``X-Forwarded-Proto`` counts only when the dashboard is told to trust it."""
    if request.url.scheme == "https":
        return True
    if trust_forwarded:
        forwarded = request.headers.get("x-forwarded-proto", "")
        return forwarded.split(",")[0].strip().lower() == "https"
    return False


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Access:
    authorize: Authorize | None = None
    token: str | None = None
    basic: tuple[str, str] | None = None
    sessions: Sessions = field(default_factory=lambda: Sessions(SESSION_TTL))
    logins: LoginLimiter = field(default_factory=LoginLimiter)
    #: trust ``X-Forwarded-Proto`` from a proxy in front (Secure cookies when it says https)
    trust_forwarded: bool = False

    @property
    def needs_login(self) -> bool:
        return self.token is not None

    @property
    def protected(self) -> bool:
        """Whether anything checks who is asking (else only loopback hosts are answered)."""
        return self.token is not None or self.basic is not None or self.authorize is not None

    def token_matches(self, given: str) -> bool:
        return self.token is not None and _same(given, self.token)

    def _credentials_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self.token is not None:
            if scheme.lower() == "bearer" and self.token_matches(value.strip()):
                return True
            cookie = request.cookies.get(SESSION_COOKIE)
            if cookie is not None and self.sessions.valid(cookie):
                return True
            if self.basic is None:
                return False
        if self.basic is not None:
            if scheme.lower() != "basic":
                return False
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            return bool(sep) and _same(user, self.basic[0]) & _same(password, self.basic[1])
        return True

    async def allowed(self, request: Request) -> str | None:
        """None when the request may go on, else why not: ``"login"`` or ``"forbidden"``."""
        if not self._credentials_ok(request):
            return "login"
        if self.authorize is not None:
            verdict: Any = self.authorize(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                return "forbidden"
        return None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(request: Request, submitted: Any) -> bool:
    """The form repeats the cookie's token, and the request comes from this very host."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(submitted, str) or not _same(cookie, submitted):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    # Behind a proxy that rewrites Host, the public name is in X-Forwarded-Host; a cross-site
    # form cannot set that header. An opaque origin ("null", a sandboxed frame) has no host.
    hosts = {request.headers.get("host", "")}
    forwarded = request.headers.get("x-forwarded-host")
    if forwarded:
        hosts.add(forwarded.split(",")[0].strip())
    netloc = urlsplit(origin).netloc
    return bool(netloc) and netloc in hosts
