"""Schemathesis over the OpenAPI document, against the real app: no 5xx, and every answer
matches the document (status codes, content types, response schemas). Bounded: a few examples
per operation, on the SQLite tier, with verified supporters to refer to."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hotline import accounts
from hotline.db import transaction
from tests.console.conftest import add_verified
from tests.kit.harness import Hotline

EXAMPLES = 5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.sqlite_only
def test_the_api_matches_its_openapi_document(hotline: Hotline) -> None:
    for n, phone in enumerate(("+15550108001", "+15550108002", "+15550108003"), 1):
        add_verified(hotline, f"Supporter {n}", phone)
    with transaction(hotline.services.sessions) as session:
        token = accounts.create_api_token(session, "schemathesis", hotline.programme_id)
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", hotline.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        exercise()
