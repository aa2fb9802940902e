"""Bad input gets a clear 4xx naming what is wrong; big bodies are refused unread."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from conveyor import Conveyor
from conveyor.web import WebSettings, create_app
from tests.web.live import LiveServer
from tests.web.support import WAIT, Tasks, serving


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        (b'{"task": "t.add", "args": [1,', 400, None, "malformed JSON"),
        (b"[1, 2]", 422, None, "Expected `object`"),
        (b'{"args": [1, 2]}', 422, "task", "missing required field `task`"),
        (b'{"task": "t.add", "args": {"x": 1}}', 422, "args", "Expected `array`"),
        (b'{"task": "t.add", "args": [1, 2], "priority": "high"}', 422, "priority", "`int"),
        (b'{"task": "t.add", "args": [1, 2], "delay": -1}', 422, "delay", ">= 0"),
        (b'{"task": "t.add", "args": [1, 2], "retries": 1.5}', 422, "retries", "`int"),
        (b'{"task": "t.add", "args": [1, 2], "bogus": 1}', 422, "bogus", "unknown field"),
        (b'{"task": "", "args": []}', 422, "task", "length >= 1"),
        (b'{"task": "t.add", "args": [1]}', 422, "args", "missing a required argument: 'y'"),
        (b'{"task": "t.add", "args": [1, 2], "kwargs": {"z": 3}}', 422, "args", "unexpected"),
        (b'{"task": "t.add", "args": [1, 2], "delay": 5, "eta": 1}', 422, "eta", "either"),
        (b'{"task": "no.such.task"}', 404, "task", "unknown task 'no.such.task'"),
        (b'{"task": "t.add", "args": [1, "2"]}', 422, "args", "argument 'y': Expected `int`"),
        (b'{"task": "t.add", "args": [1], "kwargs": {"y": 2.5}}', 422, "kwargs", "'y': Expected"),
        (b'{"task": "t.boom", "args": [null]}', 422, "args", "'message': Expected `str`, got"),
    ],
)
async def test_enqueue_refuses_bad_bodies(
    client: httpx.AsyncClient, body: bytes, status: int, field: str | None, words: str
) -> None:
    """Each mistake gets its status and a message naming the field."""
    response = await client.post(
        "/api/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["field"] == field
    assert words in problem["error"]
    assert (await client.get("/api/jobs")).json()["jobs"] == []


async def test_not_json_is_415(client: httpx.AsyncClient) -> None:
    """A form post (what a cross-site page could send) is not taken as JSON."""
    response = await client.post("/api/jobs", content=b"task=t.add")
    assert response.status_code == 415


async def test_unknown_tasks_are_accepted_with_allow_unknown(tasks: Tasks) -> None:
    """--allow-unknown takes any task name (a worker of another app may know it)."""
    async with serving(tasks.app, WebSettings(allow_unknown=True)) as client:
        response = await client.post("/api/jobs", json={"task": "other.app.task", "args": [1]})
        assert response.status_code == 202
        assert response.json()["task"] == "other.app.task"


async def test_the_apps_payload_limit_is_413(tmp_path: Any) -> None:
    """Arguments over the app's max_payload are refused with 413 naming args."""
    app = Conveyor("memory://", max_payload=100)

    @app.task(name="t.echo")
    def echo(value: str) -> str:
        return value

    async with serving(app) as client:
        response = await client.post("/api/jobs", json={"task": "t.echo", "args": ["x" * 200]})
    assert response.status_code == 413
    assert response.json()["field"] == "args"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"cursor": "x" * 100}, "cursor"),
        ({"queue": "q" * 300}, "queue"),
    ],
)
async def test_list_refuses_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    """Wrong query parameters: 422 naming the parameter."""
    response = await client.get("/api/jobs", params=params)
    assert response.status_code == 422
    assert response.json()["field"] == field


async def test_unknown_ids_and_routes(client: httpx.AsyncClient) -> None:
    """404s are JSON under /api; a wrong method is 405."""
    response = await client.get("/api/jobs/0123")
    assert response.status_code == 404
    assert response.json() == {"error": "no job with id '0123'", "field": "id"}
    assert (await client.get("/api/nothing")).status_code == 404
    assert (await client.get("/api/nothing")).json()["error"] == "Not Found"
    assert (await client.delete("/api/jobs")).status_code == 405
    assert (await client.get("/api/history", params={"since": "yesterday"})).status_code == 422


class _Body:
    """An ASGI ``receive`` that hands out a body in chunks and counts what was read."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.left = chunks
        self.size = size
        self.read = 0

    async def __call__(self) -> dict[str, Any]:
        if self.left == 0:
            return {"type": "http.disconnect"}
        self.left -= 1
        self.read += self.size
        return {"type": "http.request", "body": b" " * self.size, "more_body": self.left > 0}


async def _call(web: Any, headers: list[tuple[bytes, bytes]], body: _Body) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/jobs", "raw_path": b"/api/jobs", "root_path": "",
        "query_string": b"", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await web(scope, body, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, content


async def test_a_big_body_is_refused_and_none_of_it_kept() -> None:
    """413 on Content-Length alone: the body is read and dropped (its sender then reads the
    answer), unless it is huge or the client waits for the answer before it sends; a chunked
    body is refused just past the limit, and its rest dropped."""
    web = create_app(Tasks("memory://").app, WebSettings(max_body=256 * 1024))
    declared = _Body(chunks=160)  # 10 MiB announced
    length = (b"content-length", str(160 * 64 * 1024).encode())
    status, content = await _call(web, [length], declared)
    assert status == 413
    assert declared.read == 160 * 64 * 1024
    assert b"over the limit of 262144" in content
    waiting = _Body(chunks=160)
    status, _ = await _call(web, [length, (b"expect", b"100-continue")], waiting)
    assert (status, waiting.read) == (413, 0)
    huge = _Body(chunks=320)  # 20 MiB: past what is worth reading to answer
    status, _ = await _call(web, [(b"content-length", str(320 * 64 * 1024).encode())], huge)
    assert (status, huge.read) == (413, 0)
    streamed = _Body(chunks=160)  # no length: counted while read
    status, content = await _call(web, [], streamed)
    assert status == 413
    assert streamed.read == 160 * 64 * 1024
    problem = msgspec.json.decode(content)
    assert problem["error"] == "request body over the limit of 262144 bytes"


def _post(url: str, data: bytes | Iterator[bytes], headers: dict[str, str]) -> tuple[int, Any]:
    """POST with urllib, which sends the whole body before it reads the answer."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, msgspec.json.decode(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, msgspec.json.decode(exc.read())


def test_a_client_that_sends_the_whole_body_reads_the_413() -> None:
    """On a real server, a client that writes all of a big body first still gets the 413 (the
    server reads and drops the rest rather than close a connection still being written)."""
    app = Conveyor("memory://")
    with LiveServer(app, WebSettings(max_body=1024 * 1024)) as server:
        url = f"{server.url}/api/jobs"
        json_type = {"Content-Type": "application/json"}
        big = b'{"task": "t.echo", "args": ["' + b"x" * (2 * 1024 * 1024) + b'"]}'
        status, problem = _post(url, big, json_type)
        assert status == 413
        assert "over the limit of 1048576" in problem["error"]
        chunks = iter([big[i : i + 64 * 1024] for i in range(0, len(big), 64 * 1024)])
        status, problem = _post(url, chunks, {**json_type, "Transfer-Encoding": "chunked"})
        assert (status, problem["error"]) == (413, "request body over the limit of 1048576 bytes")
        # The server still answers as before.
        status, _ = _post(f"{server.url}/api/failed/purge", b'{"all": true}', json_type)
        assert status == 200
    app.close()
