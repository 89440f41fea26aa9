"""Property-based fuzzing of the served OpenAPI document: nothing a client sends is a 5xx.

Bounded: a few dozen examples per operation, valid and invalid data, as an admin
(so requests get past authentication into validation and the services).
"""
from __future__ import annotations

import pytest
from schemathesis import GenerationMode

EXAMPLES_PER_OPERATION = 25


@pytest.mark.timeout(600)
def test_no_server_errors_for_any_generated_request(fuzz_every_operation):
    failures = []
    ran = []

    def check(operation, mode, case, send):
        response = send(case)
        ran.append(response.status_code)
        if response.status_code >= 500:
            failures.append((operation.label, mode.value, case.path_parameters, case.query, case.body,
                             response.status_code, response.text[:300]))

    operations = fuzz_every_operation((GenerationMode.POSITIVE, GenerationMode.NEGATIVE), EXAMPLES_PER_OPERATION, check)
    assert len(operations) >= 28
    assert not failures, failures[:5]
    assert len(ran) > len(operations) * 10 and any(200 <= s < 300 for s in ran)
