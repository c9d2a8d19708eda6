"""Fixtures of the security tests, some borrowed from the suites that own them."""

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from tests.agent.conftest import names, runtime
from tests.integration.conftest import node, remove_tenant_containers
from tests.support.stack import Stack
from tests.support.users import Account, register

__all__ = ["names", "neighbours", "node", "runtime"]


@pytest.fixture
async def neighbours(
    stack: Stack, api: httpx.AsyncClient
) -> AsyncIterator[Callable[[str], Awaitable[Account]]]:
    """Make other tenants granted a node; their containers go with the test (the shared
    engine's agents would count them as orphans otherwise)."""
    made: list[Account] = []

    async def granted_on(key: str) -> Account:
        other = await register(stack)
        granted = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": other.tenant_id})
        assert granted.status_code == 201, granted.text
        made.append(other)
        return other

    yield granted_on
    for other in made:
        remove_tenant_containers(other.tenant_id)
