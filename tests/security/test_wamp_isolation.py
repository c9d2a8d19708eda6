"""Tenant isolation over WAMP: every procedure of the realm, called by a device with another
device's key, another tenant's containers and another tenant's migration.

The matrix is checked against the router's own registrations and against the URI catalogue
(edgecloud_contracts.uris), so a new procedure fails this test until it says who may call it
and what it does with ids that are not the caller's.
"""

import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from autobahn.wamp.exception import ApplicationError

from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import Action
from edgecloud_contracts.heartbeat import CompactBeat
from tests.conftest import ONE_DATABASE
from tests.security.probe_nodes import create_container, offline_device
from tests.security.raw_wamp import raw_device
from tests.support.beats import heartbeat
from tests.support.migrations import store_migration
from tests.support.users import Account, register
from tests.support.wamp import probe_key, service_session

pytestmark = [pytest.mark.stack, ONE_DATABASE]

NOT_AUTHORIZED = "wamp.error.not_authorized"

# Cloud procedures a device may call, and what one gets for ids that are not its own:
# "refused" -- an error URI; "ignored" -- the device's own news, in which anything that is
# not the caller's is skipped (a node's view may be stale, so this is not an error);
# "caller_only" -- the arguments name no device, container or migration at all.
DEVICE_CALLABLE: dict[str, str] = {
    uris.HEARTBEAT: "refused",
    uris.COMPACT_BEAT: "caller_only",
    uris.NODE_REPORT: "ignored",
    uris.LOG_SLOT: "refused",
    uris.LOG_STREAM: "refused",
    uris.PLACEMENTS: "ignored",
    uris.MIGRATION_REQUEST: "refused",
    uris.MIGRATION_REPORT: "refused",
}
# Registered for the router itself or the services: a device gets not_authorized.
NOT_FOR_DEVICES = {uris.AUTHENTICATE_DEVICE, "edge.router.authorize_device"}
# What each node registers under edge.device.<key>.: only that device and services reach it.
DEVICE_OPERATIONS = {
    *(uris.container_operation(action) for action in Action),
    uris.CONTAINER_LOGS,
    uris.CONTAINER_EXEC,
    uris.SHELL_OPEN,
    uris.SHELL_INPUT,
    uris.MIGRATION_EXPECT,
    uris.MIGRATION_START,
    uris.MIGRATION_FIND,
    uris.MIGRATION_RELAY,
    uris.MIGRATION_RELEASE,
}
# The router's meta procedures the services use.
META = {uris.META_SESSION_KILL_BY_AUTHID, uris.META_SESSION_COUNT}


def classified(uri: str) -> bool:
    if uri in DEVICE_CALLABLE or uri in NOT_FOR_DEVICES:
        return True
    if uri.startswith(uris.DEVICE_PREFIX):
        operation = uri.removeprefix(uris.DEVICE_PREFIX).split(".", 1)[-1]
        return operation in DEVICE_OPERATIONS
    return False


async def registered_procedures(stack) -> set[str]:
    async with service_session(stack, service="orchestrator") as cloud:
        await cloud.wait_joined(10)
        listed = await cloud.call("wamp.registration.list")
        ids = [i for kind in ("exact", "prefix", "wildcard") for i in listed.get(kind, [])]
        return {(await cloud.call("wamp.registration.get", i))["uri"] for i in ids}


async def test_every_procedure_is_in_the_matrix(stack, node) -> None:
    # With a node connected, its own procedures are registered too.
    registered = await registered_procedures(stack)
    agent, _ = node
    assert {u for u in registered if u.startswith(f"{uris.DEVICE_PREFIX}{agent.key}.")}
    unclassified = sorted(u for u in registered if not classified(u))
    assert not unclassified, "add the new procedure to the matrix with its isolation rule"
    # Every cloud procedure of the catalogue is served (a stale entry fails here too).
    assert set(DEVICE_CALLABLE) | {uris.AUTHENTICATE_DEVICE} <= registered
    catalogue = {
        value
        for name, value in vars(uris).items()
        if name.isupper() and isinstance(value, str) and "." in value
    }
    for value in catalogue:
        assert (
            classified(value)
            or value in DEVICE_OPERATIONS
            or value in META
            or value.startswith(("edge.event.", "wamp.session.on_"))
            or value == uris.DEVICE_PREFIX
        ), f"{value} is in edgecloud_contracts.uris but not in the matrix"


async def test_a_device_calling_a_non_device_procedure_is_not_authorized(stack, enrol) -> None:
    async with raw_device(stack, key=probe_key(), token=await enrol()) as device:
        for procedure in sorted(NOT_FOR_DEVICES | META):
            with pytest.raises(ApplicationError) as refused:
                await device.call(procedure, {"key": "anything"})
            assert refused.value.error == NOT_AUTHORIZED, procedure


async def _victim(stack, api, enrol) -> dict[str, Any]:
    """Tenant B: its device (offline, known from one heartbeat), a container on it whose
    create waits, and a migration still under way."""
    admin = await register(stack)
    key = await offline_device(
        stack, api, await enrol(), tenant_id=admin.tenant_id, location="lab-b"
    )
    container = await create_container(stack, admin, key, expect=(202,))
    migration = await store_migration(
        stack, tenant_id=admin.tenant_id, container_id=container["id"], completed=False
    )
    return {
        "admin": admin,
        "key": key,
        "container": container["id"],
        "command": container["command"],
        "migration": migration,
    }


async def _state(stack, api: httpx.AsyncClient, victim: dict[str, Any]) -> dict[str, Any]:
    admin: Account = victim["admin"]
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=10, headers=admin.headers
    ) as client:
        device = (await api.get(f"/api/v1/devices/{victim['key']}")).json()
        return {
            # Its liveness moves on by itself; what a forged beat would change does not.
            "device": {k: device.get(k) for k in ("name", "location", "arch", "os", "kernel")},
            "container": (await client.get(f"/api/v1/containers/{victim['container']}")).json(),
            "command": (await client.get(f"/api/v1/commands/{victim['command']}")).json(),
            "migration": (await client.get(f"/api/v1/migrations/{victim['migration']}")).json(),
            "migrations": (await client.get("/api/v1/migrations")).json()["items"],
            "deployments": (
                await client.get(f"/api/v1/containers/{victim['container']}/deployments")
            ).json(),
            "copies": (await client.get(f"/api/v1/containers/{victim['container']}/copies")).json(),
        }


def _container_report(container_id: str, state: str) -> dict[str, Any]:
    return {
        "container_id": container_id,
        "docker_id": secrets.token_hex(32),
        "docker_name": "forged",
        "image": "evil/image:latest",
        "state": state,
        "exit_code": 0,
    }


async def test_a_device_reaches_nothing_of_another_tenant(stack, api, enrol) -> None:
    victim = await _victim(stack, api, enrol)
    attacker = await register(stack)
    before = await _state(stack, api, victim)
    now = datetime.now(UTC).isoformat()
    b_key, b_container = victim["key"], victim["container"]
    a_key = probe_key()
    async with raw_device(stack, key=a_key, token=await enrol()) as a:
        await a.call(uris.HEARTBEAT, heartbeat(a_key))
        granted = await api.post(
            f"/api/v1/devices/{a_key}/grants", json={"tenant": attacker.tenant_id}
        )
        assert granted.status_code == 201

        async def refused(procedure: str, *args: Any) -> str:
            with pytest.raises(ApplicationError) as failed:
                await a.call(procedure, *args)
            return str(failed.value.error)

        # B's key in a heartbeat.
        forged = heartbeat(b_key, location="forged")
        assert await refused(uris.HEARTBEAT, forged) == errors.NOT_AUTHORIZED
        # B's container: its logs slot.
        assert await refused(uris.LOG_SLOT, b_container) == errors.NOT_FOUND
        # B's container: a grant to ship its output.
        assert await refused(uris.LOG_STREAM, b_container) == errors.NOT_FOUND
        # B's migration: a step of it.
        step = {
            "migration": victim["migration"],
            "step": {"name": "activation", "started_at": now, "duration_ms": 1.0},
            "state": "completed",
        }
        assert await refused(uris.MIGRATION_REPORT, step) == errors.NOT_FOUND
        # Reports about B's container, command and deployment: ignored.
        for report in [
            {"kind": "container", "container": _container_report(b_container, "removed")},
            {"kind": "container", "container": _container_report(b_container, "running")},
            {"kind": "inventory", "inventory": [_container_report(b_container, "exited")]},
            {
                "kind": "pull",
                "pull": {"command_id": victim["command"], "image": "x", "status": "forged"},
            },
        ]:
            await a.call(uris.NODE_REPORT, {"id": None, "at": now, **report})
        # B's container in A's placement check: none of A's business, nothing recorded.
        held = {"held": [{"container_id": b_container, "generation": 1}]}
        assert (await a.call(uris.PLACEMENTS, held))["stale"] == []
        # B's container in a request to move containers off A: refused, nothing moves.
        request = {"reason": "cpu", "containers": [b_container]}
        assert await refused(uris.MIGRATION_REQUEST, request) == errors.NOT_AUTHORIZED
    assert await _state(stack, api, victim) == before
    # "caller_only" in the matrix: the registry completes it from the caller's own record.
    assert not {"key", "device", "id", "k", "d"} & set(CompactBeat.model_fields)
