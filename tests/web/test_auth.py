"""Auth: a bearer token for the API, a login form and a cookie for browsers, CSRF checks."""

from __future__ import annotations

import re

import httpx
import pytest

from conveyor import cli
from conveyor.web import WebSettings
from tests.web.support import Tasks, serving

TOKEN = "s3cret-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _csrf(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)"', page)
    assert found is not None
    return found.group(1)


async def _login(client: httpx.AsyncClient) -> str:
    """Log in through the form; return the page's CSRF token."""
    response = await client.post("/login", data={"token": TOKEN, "next": "/jobs"})
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    page = await client.get("/jobs")
    assert page.status_code == 200
    return _csrf(page.text)


async def test_the_api_needs_the_token(tasks: Tasks) -> None:
    """No token or a wrong one: 401; the right bearer token opens every route."""
    async with serving(tasks.app, WebSettings(token=TOKEN)) as client:
        for path in ["/api/jobs", "/api/queues", "/api/stats", "/metrics", "/openapi.json"]:
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await client.post("/api/jobs", json={"task": "t.add"})).status_code == 401
        wrong = await client.get("/api/jobs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await client.get("/api/jobs", headers=BEARER)).status_code == 200
        created = await client.post(
            "/api/jobs", json={"task": "t.add", "args": [1, 2]}, headers=BEARER
        )
        assert created.status_code == 202
        assert (await client.get("/metrics", headers=BEARER)).status_code == 200


async def test_the_token_comes_from_the_environment(
    tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONVEYOR_API_TOKEN protects an app mounted without settings."""
    monkeypatch.setenv("CONVEYOR_API_TOKEN", TOKEN)
    async with serving(tasks.app) as client:
        assert (await client.get("/api/jobs")).status_code == 401
        assert (await client.get("/api/jobs", headers=BEARER)).status_code == 200


async def test_browsers_log_in_and_actions_need_the_csrf_token(tasks: Tasks) -> None:
    """Pages redirect to the login form; the cookie opens them; actions need CSRF too."""
    async with serving(tasks.app, WebSettings(token=TOKEN)) as client:
        page = await client.get("/failed?queue=a")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/failed%3Fqueue%3Da"
        form = await client.get("/login")
        assert form.status_code == 200
        assert 'type="password"' in form.text
        wrong = await client.post("/login", data={"token": "guess"})
        assert wrong.status_code == 401
        assert "not the token" in wrong.text
        csrf = await _login(client)
        assert csrf
        assert (await client.get("/api/queues")).status_code == 200  # the cookie is enough
        refused = await client.post("/api/queues/q/pause")
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["error"]
        forged = await client.post("/api/queues/q/pause", headers={"X-CSRF-Token": "forged"})
        assert forged.status_code == 403
        paused = await client.post("/api/queues/q/pause", headers={"X-CSRF-Token": csrf})
        assert paused.status_code == 200
        out = await client.post("/logout")
        assert out.status_code == 303
        client.cookies.clear()
        assert (await client.get("/jobs")).status_code == 303


async def test_a_forged_or_foreign_cookie_is_not_a_session(tasks: Tasks) -> None:
    """A cookie signed for another token, or edited, opens nothing."""
    async with serving(tasks.app, WebSettings(token="another-token")) as other:
        await other.post("/login", data={"token": "another-token"})
        stolen = other.cookies["conveyor_session"]
    async with serving(tasks.app, WebSettings(token=TOKEN)) as client:
        for value in [stolen, stolen[:-1] + "0", "a.b.c", "garbage"]:
            client.cookies.set("conveyor_session", value)
            assert (await client.get("/api/jobs")).status_code == 401


async def test_login_never_redirects_off_site(tasks: Tasks) -> None:
    """``next`` must be a path of this app: no open redirect."""
    async with serving(tasks.app, WebSettings(token=TOKEN)) as client:
        for target in ["https://evil.example/", "//evil.example/", "/\\evil.example"]:
            response = await client.post("/login", data={"token": TOKEN, "next": target})
            assert response.headers["location"] == "/"


async def test_cross_origin_posts_are_refused(client: httpx.AsyncClient) -> None:
    """Even without a token, a page of another site cannot make a browser act here."""
    foreign = {"Origin": "https://evil.example"}
    response = await client.post("/api/queues/default/pause", headers=foreign)
    assert response.status_code == 403
    assert response.json()["error"] == "cross-origin request refused"
    same = await client.post("/api/queues/default/pause", headers={"Origin": "http://testserver"})
    assert same.status_code == 200
    sec = await client.post("/api/failed/purge", headers={"Sec-Fetch-Site": "cross-site"})
    assert sec.status_code == 403
    proxied = {"Origin": "https://queue.example", "X-Forwarded-Host": "queue.example"}
    assert (await client.post("/api/queues/default/resume", headers=proxied)).status_code == 200


async def test_healthz_hides_its_problems_from_strangers(tasks: Tasks) -> None:
    """/healthz answers anyone (load balancers), but only a token holder sees why."""
    async with serving(tasks.app, WebSettings(token=TOKEN)) as client:
        await client.post("/api/jobs", json={"task": "t.add", "args": [1, 2]}, headers=BEARER)
        anonymous = await client.get("/healthz")
        assert anonymous.status_code == 503
        assert anonymous.json() == {"status": "unhealthy", "problems": []}
        known = await client.get("/healthz", headers=BEARER)
        assert known.status_code == 503
        assert "no live worker" in known.json()["problems"][0]


async def test_foreign_host_headers_are_refused_when_asked(tasks: Tasks) -> None:
    """allowed_hosts (what `serve` sets on loopback without a token) stops DNS rebinding."""
    async with serving(tasks.app, allowed_hosts=["localhost", "127.0.0.1"]) as client:
        rebound = await client.get("/api/jobs", headers={"Host": "evil.example"})
        assert rebound.status_code == 400
        local = await client.get("/api/jobs", headers={"Host": "127.0.0.1:8181"})
        assert local.status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "example.org", "::"])
def test_serve_refuses_a_public_address_without_a_token(
    host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One clear line and exit code 2, before anything is imported or bound."""
    monkeypatch.delenv("CONVEYOR_API_TOKEN", raising=False)
    assert cli.main(["serve", "tests.web.support:nothing", "--host", host]) == 2
    err = capsys.readouterr().err
    assert f"refusing to serve on {host} without a token" in err
    assert "--insecure" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.9.9.9", True),
     ("0.0.0.0", False), ("10.0.0.1", False), ("host.example", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only loopback addresses count as local."""
    assert cli.is_loopback(host) is loopback
