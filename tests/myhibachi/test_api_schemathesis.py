"""Property-based run of the OpenAPI schema with schemathesis against the live service:
no input, valid or not, gets a 5xx, and responses match the schema. Bounded: 15 examples per
operation and generation mode (a few hundred in all), well under a minute.

Driven through schemathesis' Python API and Hypothesis directly (its pytest plugin's
``from_fixture`` does not run under pytest 9).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hibachi_support import live_server
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

EXAMPLES = 15


def test_no_server_errors_on_any_operation(tmp_path: Path) -> None:
    with live_server(tmp_path, bookings=40) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 8
        calls = 0
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                def check(case: schemathesis.Case[Any]) -> None:
                    nonlocal calls
                    calls += 1
                    case.call_and_validate(
                        base_url=base, checks=[not_a_server_error, response_schema_conformance]
                    )

                try:
                    check()
                except Unsatisfiable:
                    # No invalid input exists for an operation without parameters.
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except Exception as exc:
                    pytest.fail(f"{operation.label} ({mode.value}): {exc}", pytrace=False)
        assert calls >= len(operations) * EXAMPLES // 2
