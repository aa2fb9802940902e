"""Who may use the web app: a bearer token for API clients, a login form and a signed cookie
for browsers, CSRF protection for the browser's actions.

Without a token every request is let in (``conveyor serve`` allows that only on a loopback
address, or with ``--insecure``). Either way an unsafe request (POST...) whose ``Origin``
names another site is refused, so a page elsewhere cannot make a visitor's browser act here.

With a token:

- ``Authorization: Bearer TOKEN`` opens every route (no cookie, so no CSRF check is needed);
- a browser logs in at ``/login`` with the token and gets an HttpOnly, SameSite=Strict cookie
  signed with a key derived from the token (so changing the token logs everyone out); its
  unsafe requests must also carry the CSRF token of that session, which the pages hold in a
  ``<meta>`` element, in an ``X-CSRF-Token`` header;
- anything else gets 401 (API, metrics) or is sent to the login form (pages).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "conveyor_session"
SESSION_SECONDS = 7 * 86_400
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/static/", "/login", "/healthz", "/favicon.ico")
MACHINE_PREFIXES = ("/api/", "/metrics", "/openapi.json")


def route_path(scope: Scope) -> str:
    """The request's path below the app's mount point."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


class Auth:
    """Checks tokens, signs and verifies session cookies, derives CSRF tokens.

    Args:
        token: the shared secret; None lets everyone in.
    """

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        seed = token.encode() if token else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"conveyor-web-session\0" + seed).digest()

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str) -> bool:
        """Whether ``given`` is the token (in constant time)."""
        if self.token is None:
            return True
        return hmac.compare_digest(given.encode(), self.token.encode())

    def new_session(self) -> str:
        """A fresh signed cookie value: ``nonce.issued.signature``."""
        body = f"{secrets.token_urlsafe(18)}.{int(time.time())}"
        return f"{body}.{self._sign(body)}"

    def session(self, cookie: str | None) -> str | None:
        """The session nonce of a valid, unexpired cookie value, else None."""
        if not cookie or cookie.count(".") != 2:
            return None
        nonce, issued, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{nonce}.{issued}")):
            return None
        if not issued.isdigit() or time.time() - int(issued) > SESSION_SECONDS:
            return None
        return nonce

    def csrf(self, nonce: str) -> str:
        """The CSRF token of the session ``nonce``."""
        return self._sign("csrf\0" + nonce)

    def csrf_ok(self, nonce: str, given: str | None) -> bool:
        """Whether ``given`` is the CSRF token of the session ``nonce``."""
        return bool(given) and hmac.compare_digest(str(given), self.csrf(nonce))


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def cross_origin(headers: Headers) -> bool:
    """Whether the request says it comes from a page of another origin."""
    origin = headers.get("origin")
    if origin is None:
        return headers.get("sec-fetch-site") == "cross-site"
    if origin == "null":
        return True
    # Behind a proxy that rewrites Host, X-Forwarded-Host names the site the browser saw (a
    # page elsewhere cannot set that header on a cross-origin request without a preflight).
    hosts = {headers.get("host", ""), headers.get("x-forwarded-host", "").split(",")[0].strip()}
    return urlsplit(origin).netloc.lower() not in {h.lower() for h in hosts if h}


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message, "field": None}, status_code=status, headers=headers)


class AuthMiddleware:
    """The ASGI middleware that applies :class:`Auth` to every HTTP request.

    It leaves in ``scope["conveyor.session"]`` the session nonce of a cookie-authenticated
    browser (the dashboard renders its CSRF token from it).
    """

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        path = route_path(scope)
        unsafe = scope["method"] not in SAFE_METHODS
        if unsafe and cross_origin(headers):
            return _problem(403, "cross-origin request refused")
        nonce = self.auth.session(_cookie(headers, COOKIE))
        if nonce is not None:
            scope["conveyor.session"] = nonce
        bearer = _bearer(headers)
        if self.auth.token is None:
            scope["conveyor.authenticated"] = True
            return None
        if bearer is not None:
            if not self.auth.token_ok(bearer):
                return _problem(
                    401, "wrong token", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                )
            scope["conveyor.authenticated"] = True
            return None
        scope["conveyor.authenticated"] = nonce is not None
        if path.startswith(PUBLIC_PREFIXES) or path == "/logout":
            return None
        if nonce is None:
            if path.startswith(MACHINE_PREFIXES):
                return _problem(
                    401,
                    "a token is required: send 'Authorization: Bearer TOKEN'",
                    {"WWW-Authenticate": "Bearer"},
                )
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            root = scope.get("root_path", "")
            return RedirectResponse(f"{root}/login?next={quote(target, safe='/')}", status_code=303)
        if unsafe and not self.auth.csrf_ok(nonce, headers.get("x-csrf-token")):
            return _problem(403, "missing or wrong CSRF token (reload the page)")
        return None


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
