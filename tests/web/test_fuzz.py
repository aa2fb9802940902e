"""Fuzz the API from its own OpenAPI document: no request crashes the server (no 5xx), and
every answer is one the document describes (status, content type, body schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor.web import WebSettings, create_app
from tests.web.support import Tasks

EXAMPLES = 12
"""Per operation, valid and invalid inputs together: a few hundred requests per broker."""


@schemathesis.check
def no_server_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> None:
    """No 5xx, except /healthz's documented 503 (the fuzzer enqueues jobs that no worker runs)."""
    unhealthy = response.status_code == 503 and case.operation.path == "/healthz"
    if response.status_code >= 500 and not unhealthy:
        raise AssertionError(
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
        )


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_no_request_crashes_the_server(kind: str, tmp_path: Path) -> None:
    """Every operation, valid and invalid inputs: zero 5xx, every answer as documented."""
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'fuzz.db'}"
    tasks = Tasks(url)
    try:
        tasks.app.enqueue("t.add", args=[1, 2])
        web = create_app(tasks.app, WebSettings(max_body=64 * 1024))
        schema = schemathesis.openapi.from_asgi("/openapi.json", web)
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operations.append(result.ok())
        assert len(operations) == 15
        for operation in operations:
            strategy = st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )

            @hypothesis.given(case=strategy)
            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            def run(case: schemathesis.Case[Any]) -> None:
                case.call_and_validate(checks=CHECKS)

            run()
    finally:
        tasks.app.close()
