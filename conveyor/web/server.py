"""``create_app()``: the API, the metrics and the dashboard as one Starlette (ASGI) app."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import msgspec
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.web import api, dashboard, openapi
from conveyor.web.auth import MACHINE_PREFIXES, AuthMiddleware, route_path
from conveyor.web.schema import Problem
from conveyor.web.state import BROKER_ERRORS, WebSettings, WebState

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.web")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


class SecurityHeaders:
    """Adds the Content-Security-Policy and its companions to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = route_path(scope).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = (
                    "same-origin"  # "no-referrer" makes form posts say Origin: null
                )
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers.setdefault("Cache-Control", "no-cache" if static else "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _body_of(receive: Receive) -> AsyncIterator[bytes]:
    """The body chunks an ASGI ``receive`` hands out, to the end or a disconnect."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class BodyLimit:
    """Answers 413 to a request whose ``Content-Length`` is over the limit, without keeping any
    of it (a body sent without a length is counted as it is read: ``api.read_body``).

    A body of up to ``api.DISCARD_MOST`` bytes is read and dropped before the answer, so that a
    client that sends it all before reading sees the 413, not a reset. A bigger one, or one
    whose client asked ``Expect: 100-continue`` (it waits for the answer), is not read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            length = headers.get("content-length")
            problem: tuple[int, str] | None = None
            if length is not None and not length.isdigit():
                problem = (400, f"Content-Length is not a number: {length[:40]!r}")
            elif length is not None and int(length) > self.limit:
                problem = (413, f"request body of {length} bytes is over the limit of {self.limit}")
            if problem is not None:
                waits = headers.get("expect", "").lower() == "100-continue"
                if problem[0] == 413 and not waits and int(length or 0) <= api.DISCARD_MOST:
                    await api.discard(_body_of(receive), api.DISCARD_MOST)
                body = Problem(error=problem[1], field=None)
                response = api.respond(body, problem[0], {"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _machine(request: Request) -> bool:
    """Whether a program, not a person, reads the answer (JSON errors rather than HTML)."""
    return route_path(request.scope).startswith((*MACHINE_PREFIXES, "/healthz"))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, api.ApiError)
    return api.respond(Problem(error=exc.message, field=exc.field), exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if _machine(request):
        return api.respond(Problem(error=str(exc.detail)), exc.status_code, headers)
    page = f"<!doctype html><title>{exc.status_code}</title><h1>{exc.status_code}</h1>"
    return HTMLResponse(page, exc.status_code, headers)


async def _broker_error(request: Request, exc: Exception) -> Response:
    message = f"broker unavailable: {type(exc).__name__}: {exc}"
    return api.respond(Problem(error=message), 503)


def create_app(
    app: Conveyor,
    settings: WebSettings | None = None,
    *,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The HTTP API, Prometheus metrics and dashboard of ``app`` as an ASGI app.

    Serve it with ``conveyor serve``, any ASGI server, or mount it in your own app
    (``Mount("/conveyor", create_app(app))``): it connects its own broker object on first use
    when the host app does not run its lifespan.

    Args:
        app: the Conveyor application (its broker and registered tasks).
        settings: token, size limit, unknown tasks...; the token defaults to
            ``$CONVEYOR_API_TOKEN``.
        allowed_hosts: accept only these ``Host`` headers (guards a token-less server on
            loopback against DNS rebinding); None accepts any.
    """
    settings = settings or WebSettings()
    if settings.token is None and os.environ.get("CONVEYOR_API_TOKEN"):
        settings = msgspec.structs.replace(settings, token=os.environ["CONVEYOR_API_TOKEN"])
    state = WebState(app, settings)

    async def openapi_json(request: Request) -> Response:
        doc = openapi.document(settings, app.tasks, request.scope.get("root_path", ""))
        return Response(msgspec.json.encode(doc), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with state.running():
            yield

    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    middleware += [
        Middleware(BodyLimit, limit=settings.max_body),
        Middleware(AuthMiddleware, auth=state.auth),
    ]
    handlers = {api.ApiError: _api_error, HTTPException: _http_error}
    handlers.update({kind: _broker_error for kind in BROKER_ERRORS})
    web = Starlette(
        routes=[
            *api.ROUTES,
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *dashboard.ROUTES,
            Mount("/static", StaticFiles(directory=dashboard.HERE / "static"), name="static"),
        ],
        middleware=middleware,
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    web.state.conveyor = state
    return web
