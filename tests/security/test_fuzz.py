"""Fuzz every service's OpenAPI with schemathesis: no server error, every error is
problem+json with a code, and the internal services refuse whoever the gateway does not
vouch for.

The gateway is fuzzed on both databases, signed in as the operator. The four internal
services are fuzzed on PostgreSQL, which refuses more than SQLite does (NUL bytes, integers
past 64 bits, over-long strings), with an identity signed as the gateway signs it; then
once per operation with no identity, a forged one and one made out for another service.
"""

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from edgecloud_servicekit.identity import OPERATOR, TENANT_ADMIN, Identity, sign_identity
from tests.support.stack import Stack
from tests.support.users import register

pytestmark = pytest.mark.stack

EXAMPLES_PER_OPERATION = 25
MINIMUM_REQUESTS = 500
INTERNAL_EXAMPLES_PER_OPERATION = 10
INTERNAL_SERVICES = ("registry", "orchestrator", "storage", "migration-scheduler")
POSTGRESQL_ONLY = pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
"""PostgreSQL refuses more than SQLite (NUL bytes, integers past 64 bits): the fuzz finds
more there, and once is enough for the suite's time."""
# Signing out would end the fuzzer's own session; it is tested on its own. So is a password
# change: its wrong current passwords count against the operator's sign-ins from here, and
# the other tests sign in as the operator from the same address.
SKIPPED = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/me/password")}
OPEN_INTERNAL = {"/livez", "/healthz", "/metrics"}
"""What an internal service answers without an identity: probes for the orchestrator."""
REQUEST_TIMEOUT_S = 15
# A live event stream never ends: schemathesis reads it for the whole request timeout (its
# read half). Its status and headers come at once, so a few seconds of it do, not fifteen.
STREAMS = {("GET", "/api/v1/events")}
STREAM_READ_S = 5

Check = Callable[[schemathesis.Case, schemathesis.Response], str | None]


def request_timeout(case: schemathesis.Case) -> float | tuple[float, float]:
    if (case.method.upper(), case.path) in STREAMS:
        return (REQUEST_TIMEOUT_S, STREAM_READ_S)  # (connect, read)
    return REQUEST_TIMEOUT_S


def not_a_problem(response: schemathesis.Response) -> str | None:
    """Why an error answer is not problem+json with a code (None when it is)."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/problem+json"):
        return f"{response.status_code} without problem+json ({content_type!r})"
    if "code" not in response.json():
        return f"{response.status_code} problem without a code"
    return None


def no_server_error(_: schemathesis.Case, response: schemathesis.Response) -> str | None:
    if response.status_code >= 500:
        return f"{response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        return not_a_problem(response)
    return None


def refused(_: schemathesis.Case, response: schemathesis.Response) -> str | None:
    if response.status_code not in (401, 403):
        return f"{response.status_code} where 401 or 403 was due: {response.text[:200]}"
    return not_a_problem(response)


def fuzz(
    schema: schemathesis.BaseSchema,
    *,
    headers: dict[str, str],
    examples: int,
    check: Check,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE,),
    skip: Callable[[str, str], bool] = lambda method, path: False,
) -> tuple[int, list[str]]:
    """Send ``examples`` generated requests to every operation; the requests sent and
    what ``check`` found wrong."""
    sent = 0
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if skip(operation.method.upper(), operation.path):
            continue

        @given(case=st.one_of(*(operation.as_strategy(mode) for mode in modes)))
        @settings(
            max_examples=examples,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            nonlocal sent
            response = case.call(headers=headers, timeout=request_timeout(case))
            sent += 1
            if (wrong := check(case, response)) is not None:
                problems.append(f"{case.method} {case.formatted_path}: {wrong}")

        call()
    return sent, problems


@POSTGRESQL_ONLY
def test_gateway_survives_generated_requests(stack: Stack) -> None:
    token = httpx.post(
        f"{stack.url('gateway')}/api/v1/auth/login",
        json={"username": "admin", "password": stack.admin_password},
        timeout=10,
    ).json()["access_token"]
    sent, problems = fuzz(
        schemathesis.openapi.from_url(f"{stack.url('gateway')}/openapi.json"),
        headers={"Authorization": f"Bearer {token}"},
        examples=EXAMPLES_PER_OPERATION,
        check=no_server_error,
        skip=lambda method, path: (method, path) in SKIPPED,
    )
    assert not problems, "\n".join(problems[:20])
    assert sent >= MINIMUM_REQUESTS


@pytest.fixture
async def caller(stack: Stack) -> Identity:
    """An operator who is also a tenant's admin: the widest identity the gateway signs."""
    account = await register(stack)
    return Identity(
        user_id=account.user_id,
        username=account.username,
        tenant_id=account.tenant_id,
        roles=frozenset({OPERATOR, TENANT_ADMIN}),
        quotas={"containers": 5, "storage_bytes": 1 << 30},
    )


def identity_header(identity: Identity, *, secret: str, audience: str) -> dict[str, str]:
    token = sign_identity(identity, secret=secret, audience=audience, lifetime=timedelta(hours=1))
    return {"X-Edgecloud-Identity": token}


@POSTGRESQL_ONLY
@pytest.mark.parametrize("service", INTERNAL_SERVICES)
def test_internal_service_survives_generated_requests(
    stack: Stack, caller: Identity, service: str
) -> None:
    sent, problems = fuzz(
        schemathesis.openapi.from_url(f"{stack.url(service)}/openapi.json"),
        headers=identity_header(caller, secret=stack.internal_secret, audience=service),
        examples=INTERNAL_EXAMPLES_PER_OPERATION,
        check=no_server_error,
        modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    )
    assert not problems, "\n".join(problems[:20])
    assert sent >= 3 * INTERNAL_EXAMPLES_PER_OPERATION


@POSTGRESQL_ONLY
@pytest.mark.parametrize("service", INTERNAL_SERVICES)
def test_internal_service_refuses_callers_the_gateway_did_not_sign_for(
    stack: Stack, caller: Identity, service: str
) -> None:
    other = "storage" if service != "storage" else "registry"
    callers = {
        "nobody": {},
        "forged": identity_header(caller, secret="not-the-internal-secret" * 2, audience=service),
        "for another service": identity_header(
            caller, secret=stack.internal_secret, audience=other
        ),
    }
    schema = schemathesis.openapi.from_url(f"{stack.url(service)}/openapi.json")
    for who, headers in callers.items():
        sent, problems = fuzz(
            schema,
            headers=headers,
            examples=1,
            check=refused,
            skip=lambda method, path: path in OPEN_INTERNAL,
        )
        assert not problems, f"{who}:\n" + "\n".join(problems[:20])
        assert sent >= 2
