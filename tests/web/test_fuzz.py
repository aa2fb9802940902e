"""Fuzz the API from its own OpenAPI document as ``schemathesis run --checks all`` does: the
examples, coverage and fuzzing phases, every check. No request crashes the server (no 5xx);
every answer is one the document describes (status, content type, headers, body schema); what
the schema allows is accepted and what it forbids is refused; a method an operation does not
have is refused with an ``Allow`` header naming those it has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)

from conveyor.web import WebSettings, create_app
from tests.web.support import Tasks

EXAMPLES = 12
"""Fuzzing cases per operation, valid and invalid together, beside the coverage phase's."""


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


def check(case: schemathesis.Case[Any]) -> None:
    """Send the case; run every built-in check on the answer but the 5xx one, which
    no_server_error replaces to let /healthz answer its documented 503."""
    case.call_and_validate(excluded_checks=[not_a_server_error])


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_every_answer_is_as_documented(kind: str, tmp_path: Path) -> None:
    """Every operation, valid and invalid inputs, every check of schemathesis."""
    tasks = Tasks("memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'fuzz.db'}")
    try:
        tasks.app.enqueue("t.add", args=[1, 2])
        web = create_app(tasks.app, WebSettings(max_body=64 * 1024))
        schema = schemathesis.openapi.from_asgi("/openapi.json", web)
        # A body over the size limit is refused with 413, before it is read or checked.
        rejection = schema.config.checks.negative_data_rejection
        schema.config.checks.negative_data_rejection = type(rejection)(
            expected_statuses=[*rejection.expected_statuses, "413"]
        )
        # The phases `schemathesis run` has for one operation, as its pytest plugin builds them
        # (the plugin itself does not run on this pytest).
        config = HypothesisTestConfig(
            project=schema.config,
            modes=list(HypothesisTestMode),
            settings=hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
            ),
        )
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operations.append(result.ok())
        assert len(operations) == 15
        for operation in operations:
            create_test(operation=operation, test_func=check, config=config)()
    finally:
        tasks.app.close()
