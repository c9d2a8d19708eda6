"""Fuzz the gateway's OpenAPI with schemathesis: no server error, and every error is
problem+json with a code."""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

pytestmark = pytest.mark.stack

EXAMPLES_PER_OPERATION = 25
MINIMUM_REQUESTS = 500
# Signing out would end the fuzzer's own session; it is tested on its own.
SKIPPED = {("POST", "/api/v1/auth/logout")}
REQUEST_TIMEOUT_S = 15
# A live event stream never ends: schemathesis reads it for the whole request timeout (its
# read half). Its status and headers come at once, so a few seconds of it do, not fifteen.
STREAMS = {("GET", "/api/v1/events")}
STREAM_READ_S = 5


def request_timeout(case: schemathesis.Case) -> float | tuple[float, float]:
    if (case.method.upper(), case.path) in STREAMS:
        return (REQUEST_TIMEOUT_S, STREAM_READ_S)  # (connect, read)
    return REQUEST_TIMEOUT_S


def test_gateway_survives_generated_requests(stack) -> None:
    token = httpx.post(
        f"{stack.url('gateway')}/api/v1/auth/login",
        json={"username": "admin", "password": stack.admin_password},
        timeout=10,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{stack.url('gateway')}/openapi.json")
    sent = 0
    problems: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            nonlocal sent
            response = case.call(headers=headers, timeout=request_timeout(case))
            sent += 1
            where = f"{case.method} {case.formatted_path}"
            if response.status_code >= 500:
                problems.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400:
                content_type = (response.headers.get("content-type") or [""])[0]
                if not content_type.startswith("application/problem+json"):
                    problems.append(f"{where}: {response.status_code} without problem+json")
                elif "code" not in response.json():
                    problems.append(f"{where}: {response.status_code} problem without a code")

        call()

    assert not problems, "\n".join(problems[:20])
    assert sent >= MINIMUM_REQUESTS
