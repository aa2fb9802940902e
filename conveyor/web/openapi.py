"""``GET /openapi.json``: the OpenAPI 3.1 document of the API, built from the same msgspec
types that decode the requests and encode the responses."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from conveyor import __version__
from conveyor.job import Status
from conveyor.web import schema
from conveyor.web.state import WebSettings

if TYPE_CHECKING:
    from conveyor.task import Task

_REF = "#/components/schemas/{name}"
_NAME = {"type": "string", "maxLength": schema.MAX_NAME}
_BAD_QUEUE = {
    "404": "no route: the name holds a line break",
    "422": "a queue name is 1 to 200 characters",
}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": schema.MAX_LIMIT, "default": 50}
_TASK_REF = "#/components/schemas/task.{name}"
"""Where the types of task parameters go, apart from the API's own."""

# What api._batch refuses: a body naming no job (ids and queue present and not null, or all).
_NAMES_JOBS = {
    "anyOf": [
        {"required": ["ids"], "properties": {"ids": {"type": "array"}}},
        {"required": ["queue"], "properties": {"queue": {"type": "string"}}},
        {"required": ["all"], "properties": {"all": {"const": True}}},
    ]
}
# What api.enqueue refuses: a delay and an eta both given.
_ONE_WHEN = {
    "not": {
        "required": ["delay", "eta"],
        "properties": {"delay": {"type": "number"}, "eta": {"type": "number"}},
    }
}

_P = inspect.Parameter


def _call_branches(name: str, signature: inspect.Signature, types: dict[str, Any]) -> list[Any]:
    """The bodies whose ``args`` and ``kwargs`` bind to ``signature``, one per number of
    positional arguments: exactly the calls ``Task.check_types`` lets through."""
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
    var_args = next((p for p in params if p.kind is _P.VAR_POSITIONAL), None)
    var_kwargs = next((p for p in params if p.kind is _P.VAR_KEYWORD), None)
    keyword_only = [p for p in params if p.kind is _P.KEYWORD_ONLY]
    branches: list[Any] = []
    for given in range(len(positional) + 1):
        rest = positional[given:]
        if any(p.kind is _P.POSITIONAL_ONLY and p.default is _P.empty for p in rest):
            continue  # a required positional-only parameter left for kwargs: no call binds
        args: dict[str, Any] = {"type": "array", "minItems": given}
        if given:
            args["prefixItems"] = [types.get(p.name, {}) for p in positional[:given]]
        if var_args is not None and given == len(positional):
            args["items"] = types.get(var_args.name, {}).get("items", {})
        else:
            args["maxItems"] = given
        by_name = [p for p in rest if p.kind is not _P.POSITIONAL_ONLY] + keyword_only
        kwargs: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: types.get(p.name, {}) for p in by_name},
            "additionalProperties": False,
        }
        needed = [p.name for p in by_name if p.default is _P.empty]
        if needed:
            kwargs["required"] = needed
        if var_kwargs is not None:
            extra = types.get(var_kwargs.name, {}).get("additionalProperties", {})
            kwargs["additionalProperties"] = extra
            taken = [p.name for p in positional[:given] if p.kind is not _P.POSITIONAL_ONLY]
            if taken:  # given positionally, the name cannot come again in kwargs
                kwargs["propertyNames"] = {"not": {"enum": taken}}
        required = ["task", *(["args"] if given else []), *(["kwargs"] if needed else [])]
        branches.append(
            {
                "properties": {"task": {"const": name}, "args": args, "kwargs": kwargs},
                "required": required,
            }
        )
    return branches


def _calls(
    tasks: Mapping[str, Task[Any, Any]], allow_unknown: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of the calls the server accepts, and the components the types it uses need."""
    where = [(name, param) for name, task in tasks.items() for param in task.argument_types()]
    kinds = [tasks[name].argument_types()[param] for name, param in where]
    found, components = msgspec.json.schema_components(kinds, ref_template=_TASK_REF)
    types: dict[str, dict[str, Any]] = {name: {} for name in tasks}
    for (name, param), one in zip(where, found, strict=True):
        types[name][param] = one
    branches = [
        branch
        for name in sorted(tasks)
        for branch in _call_branches(name, tasks[name].signature, types[name])
    ]
    if allow_unknown:  # any arguments for a task the app does not know
        branches.append({"properties": {"task": {"not": {"enum": sorted(tasks)}}}})
    named = {f"task.{key}": value for key, value in components.items()}
    return {"anyOf": branches} if branches else {"not": {}}, named


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _json(kind: type, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(kind)}}}


def _problem(description: str) -> dict[str, Any]:
    return _json(schema.Problem, description)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_JOB_ID = _path("id", {"type": "string", "minLength": 1, "maxLength": schema.MAX_ID}, "a job id")
_QUEUE = _path("name", {"type": "string", "minLength": 1, "maxLength": schema.MAX_NAME}, "a queue")


def _operation(
    summary: str,
    ok: dict[str, dict[str, Any]],
    *,
    body: type | None = None,
    body_rules: list[dict[str, Any]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    errors: dict[str, str] | None = None,
    secured: bool,
) -> dict[str, Any]:
    responses: dict[str, Any] = dict(ok)
    for code, text in (errors or {}).items():
        responses[code] = _problem(text)
    if body is not None:
        responses["400"] = _problem("malformed JSON")
        responses["413"] = _problem("the body is over the size limit")
        responses["415"] = _problem("the body is not JSON")
        responses["422"] = _problem("a field is wrong (named in `field`)")
    if secured:
        responses["401"] = _problem("no token, or a wrong one")
        responses["403"] = _problem("a cross-origin or CSRF-less browser request")
    responses["503"] = _problem("the broker cannot be reached")
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        shape: dict[str, Any] = _ref(body)
        if body_rules:
            shape = {"allOf": [shape, *body_rules]}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": shape}}}
    return op


def document(
    settings: WebSettings, tasks: Mapping[str, Task[Any, Any]], root: str = ""
) -> dict[str, Any]:
    """The OpenAPI document of an app with these settings and registered tasks.

    It says what the server enforces: the request bodies' schemas refuse what the server
    refuses, a task's arguments included (their number, names and annotated types).
    """
    secured = settings.token is not None
    _, components = msgspec.json.schema_components(
        [
            schema.EnqueueBody, schema.BatchBody, schema.Problem, schema.JobView, schema.JobPage,
            schema.QueueList, schema.QueueState, schema.WorkerList, schema.Stats, schema.History,
            schema.Health, schema.Count,
        ],
        ref_template=_REF,
    )  # fmt: skip
    if not settings.allow_unknown:
        task = components["EnqueueBody"]["properties"]["task"]
        task["enum"] = sorted(tasks) or [""]
        task["description"] = "a task the app registers"
    calls, task_types = _calls(tasks, settings.allow_unknown)
    components.update(task_types)
    op = _operation
    queued = {"202": _json(schema.JobView, "accepted: the new job")}
    queued["200"] = _json(schema.JobView, "an unfinished job already holds this key: that job")
    unknown = {"404": "no such task (without --allow-unknown)"}
    no_job = {"404": "no job with this id"}
    conflict = {"404": "no job with this id", "409": "the job is not in a state for this"}
    statuses = [s.value for s in Status]
    paths: dict[str, Any] = {
        "/api/jobs": {
            "post": op(
                "Enqueue a job",
                queued,
                body=schema.EnqueueBody,
                body_rules=[calls, _ONE_WHEN],
                errors=unknown,
                secured=secured,
            ),
            "get": op(
                "List jobs, newest first",
                {"200": _json(schema.JobPage, "a page of jobs")},
                parameters=[
                    _query(
                        "status",
                        {"type": "string", "enum": ["", *statuses]},
                        "only this status (empty: any)",
                    ),
                    _query("queue", _NAME, "only this queue"),
                    _query("task", _NAME, "only this task"),
                    _query(
                        "limit",
                        _LIMIT,
                        "jobs per page",
                    ),
                    _query(
                        "cursor",
                        {"type": "string", "maxLength": schema.MAX_ID},
                        "the `next` of the previous page",
                    ),
                ],
                errors={"422": "a parameter is wrong (named in `field`)"},
                secured=secured,
            ),
        },
        "/api/jobs/{id}": {
            "get": op(
                "One job",
                {"200": _json(schema.JobView, "the job")},
                parameters=[_JOB_ID],
                errors=no_job,
                secured=secured,
            )
        },
        "/api/jobs/{id}/cancel": {
            "post": op(
                "Cancel a job (a running one at its worker's next heartbeat)",
                {"200": _json(schema.JobView, "the job after the cancel")},
                parameters=[_JOB_ID],
                errors=conflict,
                secured=secured,
            )
        },
        "/api/jobs/{id}/retry": {
            "post": op(
                "Retry a failed job",
                {"200": _json(schema.JobView, "the job, queued again")},
                parameters=[_JOB_ID],
                errors=conflict,
                secured=secured,
            )
        },
        "/api/failed/retry": {
            "post": op(
                "Retry failed jobs: by id, of a queue, or all",
                {"200": _json(schema.Count, "how many were queued again")},
                body=schema.BatchBody,
                body_rules=[_NAMES_JOBS],
                secured=secured,
            )
        },
        "/api/failed/purge": {
            "post": op(
                "Delete failed jobs: by id, of a queue, or all",
                {"200": _json(schema.Count, "how many were deleted")},
                body=schema.BatchBody,
                body_rules=[_NAMES_JOBS],
                secured=secured,
            )
        },
        "/api/queues": {
            "get": op(
                "Queues: jobs per status, paused, workers",
                {"200": _json(schema.QueueList, "the queues")},
                secured=secured,
            )
        },
        "/api/queues/{name}/pause": {
            "post": op(
                "Pause a queue: no worker claims its jobs until it is resumed",
                {"200": _json(schema.QueueState, "the queue")},
                parameters=[_QUEUE],
                errors=_BAD_QUEUE,
                secured=secured,
            )
        },
        "/api/queues/{name}/resume": {
            "post": op(
                "Resume a paused queue",
                {"200": _json(schema.QueueState, "the queue")},
                parameters=[_QUEUE],
                errors=_BAD_QUEUE,
                secured=secured,
            )
        },
        "/api/workers": {
            "get": op(
                "Live workers with their heartbeats and running jobs",
                {"200": _json(schema.WorkerList, "the workers")},
                secured=secured,
            )
        },
        "/api/stats": {
            "get": op(
                "Totals over every queue and worker",
                {"200": _json(schema.Stats, "the totals")},
                secured=secured,
            )
        },
        "/api/history": {
            "get": op(
                "Samples for the charts (kept in the server's memory)",
                {"200": _json(schema.History, "the samples")},
                parameters=[_query("since", {"type": "number"}, "only samples after this time")],
                errors={"422": "since is not a number"},
                secured=secured,
            )
        },
        "/healthz": {
            "get": {
                "summary": "Health: the broker answers and every queue with due jobs has a worker",
                "responses": {
                    "200": _json(schema.Health, "healthy"),
                    "503": _json(schema.Health, "unhealthy (problems shown when authenticated)"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, summed over every worker",
                "responses": {
                    "200": {
                        "description": "the text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **({"401": _problem("no token, or a wrong one")} if secured else {}),
                },
            }
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor",
            "version": __version__,
            "description": "Enqueue and manage background jobs; see the README.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if root:
        doc["servers"] = [{"url": root}]
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
        doc["paths"]["/healthz"]["get"]["security"] = [{}, {"bearer": []}]
    return doc
