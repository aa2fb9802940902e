"""The OpenAPI document says what the server enforces: a body its schema allows is accepted, one
it forbids is refused, the arguments of each task included; and ``Allow`` names every method."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import msgspec
import pytest

from conveyor import Conveyor
from conveyor.web import WebSettings
from tests.web.support import serving


class Size(msgspec.Struct):
    """A struct parameter: an object with these fields in the document."""

    width: int
    height: int


def _app() -> Conveyor:
    app = Conveyor("memory://")

    @app.task(name="t.resize")
    def resize(image: str, size: Size, /, quality: float = 0.8, *, tags: list[str]) -> None: ...

    @app.task(name="t.log")
    def log(level: int, *parts: str, **fields: bool) -> None: ...

    @app.task(name="t.loose")
    def loose(anything, other: object = None) -> None:  # type: ignore[no-untyped-def]
        ...

    return app


SIZE = {"width": 10, "height": 20}
BODIES: list[tuple[dict[str, Any], bool]] = [
    ({"task": "t.resize", "args": ["a.png", SIZE], "kwargs": {"tags": []}}, True),
    ({"task": "t.resize", "args": ["a.png", SIZE, 1], "kwargs": {"tags": ["x"]}}, True),
    ({"task": "t.resize", "args": ["a.png", SIZE], "kwargs": {"tags": [], "quality": 1.5}}, True),
    ({"task": "t.resize", "args": ["a.png", SIZE]}, False),  # tags is required
    ({"task": "t.resize", "args": ["a.png"], "kwargs": {"size": SIZE, "tags": []}}, False),
    ({"task": "t.resize", "args": ["a.png", {"width": 1}], "kwargs": {"tags": []}}, False),
    ({"task": "t.resize", "args": ["a.png", SIZE, "high"], "kwargs": {"tags": []}}, False),
    ({"task": "t.resize", "args": ["a.png", SIZE, 1], "kwargs": {"tags": [], "quality": 1}}, False),
    ({"task": "t.resize", "args": ["a.png", SIZE], "kwargs": {"tags": [], "x": 1}}, False),
    ({"task": "t.log", "args": [1]}, True),
    ({"task": "t.log", "args": [3.0, "a", "b"], "kwargs": {"urgent": True}}, True),
    ({"task": "t.log", "kwargs": {"level": 2}}, True),
    ({"task": "t.log", "args": [1, 2]}, False),
    ({"task": "t.log", "args": [1], "kwargs": {"level": 2}}, False),  # level twice
    ({"task": "t.log", "args": [1], "kwargs": {"urgent": "yes"}}, False),
    ({"task": "t.log", "args": [True]}, False),
    ({"task": "t.log"}, False),
    ({"task": "t.loose", "args": [{"any": ["thing"]}]}, True),
    ({"task": "t.loose", "kwargs": {"anything": 1, "other": "x"}}, True),
    ({"task": "t.loose", "args": [1, 2, 3]}, False),
    ({"task": "t.log", "args": [1], "delay": 5}, True),
    ({"task": "t.log", "args": [1], "delay": 5, "eta": 1}, False),
    ({"task": "t.log", "args": [1], "delay": None, "eta": 1}, True),
    ({"task": "t.log", "args": [1], "retries": 2.0}, True),
    ({"task": "t.nothing"}, False),
]


def _body_schema(doc: dict[str, Any], path: str) -> jsonschema_rs.Validator:
    body = doc["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    shape = body["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for({**shape, "components": doc["components"]})


@pytest.mark.parametrize(("body", "accepted"), BODIES)
async def test_an_enqueue_is_accepted_exactly_when_the_document_allows_it(
    body: dict[str, Any], accepted: bool
) -> None:
    """The schema of POST /api/jobs binds each task's parameters, their types included."""
    app = _app()
    async with serving(app) as client:
        doc = (await client.get("/openapi.json")).json()
        allowed = _body_schema(doc, "/api/jobs").is_valid(body)
        response = await client.post("/api/jobs", json=body)
    app.close()
    assert (allowed, response.status_code in (200, 202)) == (accepted, accepted), response.text


async def test_with_allow_unknown_any_other_task_takes_any_arguments() -> None:
    """--allow-unknown: a task the app does not know is open; one it knows is still checked."""
    app = _app()
    async with serving(app, WebSettings(allow_unknown=True)) as client:
        doc = (await client.get("/openapi.json")).json()
        schema = _body_schema(doc, "/api/jobs")
        assert schema.is_valid({"task": "other.task", "args": [1, "x"]})
        assert not schema.is_valid({"task": "t.log", "args": ["x"]})
        assert (await client.post("/api/jobs", json={"task": "t.log", "args": ["x"]})).is_error
    app.close()


@pytest.mark.parametrize("path", ["/api/failed/retry", "/api/failed/purge"])
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (None, 415),
        ({}, 422),
        ({"all": False}, 422),
        ({"ids": None, "queue": None}, 422),
        ({"all": True}, 200),
        ({"ids": []}, 200),
        ({"queue": "q"}, 200),
    ],
)
async def test_a_batch_must_name_its_jobs_by_the_document_too(
    path: str, body: dict[str, Any] | None, status: int
) -> None:
    """The body is required, and names ids, a queue or all, in the schema as in the server."""
    app = _app()
    async with serving(app) as client:
        doc = (await client.get("/openapi.json")).json()
        allowed = body is not None and _body_schema(doc, path).is_valid(body)
        response = await client.post(path, json=body) if body is not None else None
        if response is None:
            response = await client.post(path)
    app.close()
    assert response.status_code == status, response.text
    assert allowed is (status == 200)


async def test_a_wrong_method_names_every_method_of_the_path() -> None:
    """/api/jobs has GET and POST: a 405 there says both."""
    app = _app()
    async with serving(app) as client:
        for method in ("OPTIONS", "DELETE", "PUT"):
            response = await client.request(method, "/api/jobs")
            assert response.status_code == 405
            assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
        answered: httpx.Response = await client.get("/api/jobs")
        assert answered.status_code == 200
    app.close()
