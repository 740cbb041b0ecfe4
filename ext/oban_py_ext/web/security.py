"""Who may see the dashboard and how an action proves it came from one of its own pages.

Access, checked on every request before anything is read:

- ``authorize(request)``, the mounting application's hook (sync or async; falsy refuses with
  403). It sees the Starlette ``Request``, so it can use the app's own session or headers and
  tell reads (``GET``) from actions (``POST``).
- ``token``: a shared secret, sent as ``Authorization: Bearer <token>`` or entered once on the
  login page, which sets an HttpOnly cookie holding an HMAC of the token (never the token).
- ``basic``: ``(user, password)`` checked against HTTP Basic credentials; browsers prompt.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

Authorize = Callable[[Request], bool | Awaitable[bool]]

SESSION_COOKIE = "oban_web_session"
CSRF_COOKIE = "oban_web_csrf"
CSRF_FIELD = "_csrf"


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"oban-py web session", hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Access:
    authorize: Authorize | None = None
    token: str | None = None
    basic: tuple[str, str] | None = None

    @property
    def needs_login(self) -> bool:
        return self.token is not None

    def session_cookie(self) -> str:
        assert self.token is not None
        return _session_value(self.token)

    def token_matches(self, given: str) -> bool:
        return self.token is not None and _same(given, self.token)

    def _credentials_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self.token is not None:
            if scheme.lower() == "bearer" and self.token_matches(value.strip()):
                return True
            cookie = request.cookies.get(SESSION_COOKIE)
            if cookie is not None and _same(cookie, self.session_cookie()):
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
