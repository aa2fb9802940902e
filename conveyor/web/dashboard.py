"""The dashboard's pages and the login form.

Each page is a server-rendered shell (``templates/``); ``static/conveyor.js`` fills it from
the JSON API and refreshes it by polling. Everything a job carries reaches the page through
``textContent`` (never as HTML), and the templates autoescape; the Content-Security-Policy
allows no inline script at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from conveyor import __version__
from conveyor.web.api import ApiError, read_body, state_of
from conveyor.web.auth import COOKIE, SESSION_SECONDS

HERE = Path(__file__).parent

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
templates = Jinja2Templates(env=_env)

NAV = [("overview", "/", "Overview"), ("jobs", "/jobs", "Jobs"), ("failed", "/failed", "Failed"),
       ("workers", "/workers", "Workers")]  # fmt: skip


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _page(request: Request, page: str, title: str, **extra: Any) -> Response:
    state = state_of(request)
    nonce = request.scope.get("conveyor.session")
    context = {
        "root": _root(request),
        "page": page,
        "title": title,
        "nav": NAV,
        "csrf": state.auth.csrf(nonce) if nonce else "",
        "logout": state.auth.token is not None and nonce is not None,
        "broker": state.broker_url,
        "version": __version__,
        "job_id": "",
        **extra,
    }
    return templates.TemplateResponse(request, f"{page}.html", context)


async def overview(request: Request) -> Response:
    """``/``: queues, counts and the charts of the last hour."""
    return _page(request, "overview", "Overview")


async def jobs(request: Request) -> Response:
    """``/jobs``: jobs with filters."""
    return _page(request, "jobs", "Jobs")


async def job(request: Request) -> Response:
    """``/jobs/{id}``: one job."""
    return _page(request, "job", "Job", job_id=request.path_params["id"])


async def failed(request: Request) -> Response:
    """``/failed``: the dead-letter queue."""
    return _page(request, "failed", "Failed jobs")


async def workers(request: Request) -> Response:
    """``/workers``: live workers."""
    return _page(request, "workers", "Workers")


def _safe_next(target: str | None) -> str:
    """A path inside the app to go to after login (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login_form(request: Request) -> Response:
    """``GET /login``."""
    if state_of(request).auth.token is None:
        return RedirectResponse(f"{_root(request)}/", status_code=303)
    target = _safe_next(request.query_params.get("next"))
    return templates.TemplateResponse(
        request, "login.html", {"root": _root(request), "next": target, "error": ""}
    )


async def login(request: Request) -> Response:
    """``POST /login``: the token in a form; sets the session cookie."""
    auth = state_of(request).auth
    root = _root(request)
    try:
        form = parse_qs((await read_body(request)).decode("utf-8", "replace"))
    except ApiError as exc:
        return Response(exc.message, exc.status)
    target = _safe_next((form.get("next") or ["/"])[0])
    token = (form.get("token") or [""])[0]
    if auth.token is None:
        return RedirectResponse(f"{root}{target}", status_code=303)
    if not auth.token_ok(token):
        context = {"root": root, "next": target, "error": "That is not the token."}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    response = RedirectResponse(f"{root}{target}", status_code=303)
    response.set_cookie(
        COOKIE,
        auth.new_session(),
        max_age=SESSION_SECONDS,
        path=root or "/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def logout(request: Request) -> Response:
    """``POST /logout``: forget the session cookie."""
    root = _root(request)
    response = RedirectResponse(f"{root}/login", status_code=303)
    response.delete_cookie(COOKIE, path=root or "/", httponly=True, samesite="strict")
    return response


async def favicon(request: Request) -> Response:
    """``/favicon.ico``, for the browsers that ask for it (the pages link the SVG)."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


ROUTES = [
    Route("/", overview, methods=["GET"]),
    Route("/favicon.ico", favicon, methods=["GET"]),
    Route("/jobs", jobs, methods=["GET"]),
    Route("/jobs/{id}", job, methods=["GET"]),
    Route("/failed", failed, methods=["GET"]),
    Route("/workers", workers, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
