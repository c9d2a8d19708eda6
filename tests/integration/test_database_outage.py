"""When PostgreSQL drops the services' connections (a restart, a failover), requests in
the gap answer 503 with a code, never 500, and the services reconnect on their own."""

import httpx
import pytest

from tests.conftest import eventually
from tests.support.stack import drop_pg_connections

pytestmark = pytest.mark.stack


# Only PostgreSQL has server connections to lose: this runs on that stack alone (SQLite's
# file handles cannot be dropped from outside).
@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
async def test_dropped_database_connections_give_503_then_recover(stack, api) -> None:
    assert (await api.get("/api/v1/containers")).status_code == 200
    assert drop_pg_connections(stack.pg_database) > 0
    seen = []

    async def answers() -> bool:
        # The gateway (tokens) and the orchestrator (containers) both had pooled connections.
        response = await api.get("/api/v1/containers")
        seen.append(response.status_code)
        if response.status_code == 503:
            problem = response.json()
            assert problem["code"] == "database_unavailable", problem
            assert response.headers["Retry-After"] == "1"
        return response.status_code == 200

    await eventually(answers, timeout=10, interval=0.05)
    assert set(seen) <= {200, 503}, seen
    assert 503 in seen, "a request on a dropped connection should have answered 503"
    # Health probes ask the database itself, not a connection it dropped earlier.
    for service in stack.services:
        async with httpx.AsyncClient(base_url=stack.url(service), timeout=5) as probe:
            assert (await probe.get("/healthz")).status_code == 200, service
