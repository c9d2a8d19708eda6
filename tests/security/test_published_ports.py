"""Published ports through the public API (issue 20, point 3): a host port is published
only from the range the node's operator allows, by one container at a time whatever the
tenants (a race between tenants has exactly one winner, on either database), a placement
goes only where the ports fit, and a move to a device that cannot publish them is refused
before anything is recorded. The nodes speak the WAMP protocol themselves (no Docker)."""

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from edgecloud_contracts import uris
from tests.integration.test_gateway_api import assert_problem
from tests.security.probe_nodes import answer_creates
from tests.support.beats import heartbeat
from tests.support.stack import Stack
from tests.support.users import Account, register
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
RANGE = {"pids_per_container": 512, "pids_total": 4096, "ports": [30000, 30099]}
WEB = {"host": 30080, "container": 80}


def described(key: str, policy: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    return heartbeat(key)["device"] | {"policy": policy} | fields


async def offline(
    stack: Stack, api: httpx.AsyncClient, token: str, policy: dict[str, Any] | None, *to: Account
) -> str:
    """A device known from one heartbeat (creates on it are queued: 202), granted ``to``."""
    key = probe_key()
    async with device_session(stack, key=key, token=token) as uplink:
        beat = heartbeat(key, device=described(key, policy))
        await uplink.call(uris.HEARTBEAT, beat, timeout=5)
    for account in to:
        answer = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": account.tenant_id})
        assert answer.status_code == 201, answer.text
    return key


async def create(
    client: httpx.AsyncClient, user: Account, name: str, **body: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/containers",
        json={"name": name, "image": IMAGE, **body},
        headers=user.headers,
        timeout=60,
    )


async def listed(client: httpx.AsyncClient, user: Account) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/containers", headers=user.headers)
    return list(answer.json()["items"])


async def test_tenants_racing_for_one_port_have_exactly_one_winner(stack, api, enrol) -> None:
    a, b = await register(stack), await register(stack)
    key = await offline(stack, api, await enrol(), RANGE, a, b)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        answers = await asyncio.gather(
            *(
                create(client, user, f"web{number}", device=key, ports=[WEB])
                for number in range(5)
                for user in (a, b)
            )
        )
        mine = {user.username: await listed(client, user) for user in (a, b)}
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] + [409] * 9, [answer.text for answer in answers]
    for answer in answers:
        if answer.status_code == 409:
            refused = assert_problem(answer, 409, "port_taken")
            assert (refused["port"], refused["protocol"]) == (30080, "tcp")
            assert a.username not in refused["detail"]  # the holder stays unnamed
            assert b.username not in refused["detail"]
    assert sum(len(items) for items in mine.values()) == 1


async def test_ports_the_node_does_not_allow_are_refused_and_nothing_is_kept(
    stack, api, enrol
) -> None:
    user = await register(stack)
    ranged = await offline(stack, api, await enrol(), RANGE, user)
    closed = await offline(stack, api, await enrol(), {**RANGE, "ports": None}, user)
    older = await offline(stack, api, await enrol(), None, user)  # an agent before policies
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        for key, ports, status, code in (
            (ranged, [{"host": 8080, "container": 80}], 422, "port_out_of_range"),
            (closed, [WEB], 422, "ports_not_allowed"),
            (older, [WEB], 422, "ports_not_allowed"),
            (ranged, [WEB, {**WEB, "container": 81}], 422, "validation_failed"),  # twice
            (ranged, [{"host": 70000, "container": 80}], 422, "validation_failed"),
            (ranged, [{**WEB, "protocol": "sctp"}], 422, "validation_failed"),
        ):
            refused = await create(client, user, "web", device=key, ports=ports)
            assert_problem(refused, status, code)
        no_network = await create(client, user, "web", device=ranged, ports=[WEB], network="none")
        assert_problem(no_network, 422, "validation_failed")
        assert await listed(client, user) == []
        # Within the range, UDP and TCP of one number are two ports.
        small = {"cpus": 0.5}  # three of them within the tenant's share of the node
        for protocol in ("tcp", "udp"):
            port = {**WEB, "protocol": protocol}
            made = await create(
                client, user, f"web-{protocol}", device=ranged, ports=[port], limits=small
            )
            assert made.status_code == 202, made.text
        alone = await create(client, user, "alone", device=ranged, network="none", limits=small)
        assert alone.status_code == 202, alone.text


async def test_a_placement_goes_where_its_ports_fit(stack, api, enrol) -> None:
    user, other = await register(stack), await register(stack)
    location = f"site-{secrets.token_hex(4)}"
    keys = [probe_key() for _ in range(3)]
    policies = [{**RANGE, "ports": None}, RANGE, RANGE]  # no range; port taken; free
    async with (
        device_session(stack, key=keys[0], token=await enrol()) as closed,
        device_session(stack, key=keys[1], token=await enrol()) as busy,
        device_session(stack, key=keys[2], token=await enrol()) as free,
    ):
        for uplink, key, policy, cpu in zip(
            (closed, busy, free), keys, policies, (1.0, 2.0, 90.0), strict=True
        ):
            beat = heartbeat(key, device=described(key, policy, location=location))
            beat["metrics"]["cpu_percent"] = cpu  # the free one is the busiest
            await answer_creates(uplink, key)
            await uplink.call(uris.HEARTBEAT, beat, timeout=5)
            for account in (user, other):
                granted = await api.post(
                    f"/api/v1/devices/{key}/grants", json={"tenant": account.tenant_id}
                )
                assert granted.status_code == 201, granted.text
        async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
            holder = await create(client, other, "holder", device=keys[1], ports=[WEB])
            assert holder.status_code == 201, holder.text
            placed = await create(
                client, user, "web", placement={"location": location}, ports=[WEB]
            )
            assert placed.status_code == 201, placed.text
            assert placed.json()["device"] == keys[2]
            # Nowhere left: the placement says so.
            again = await create(
                client, other, "web", placement={"location": location}, ports=[WEB]
            )
            assert "ports free" in assert_problem(again, 409, "no_matching_device")["detail"]


async def test_a_move_to_a_device_that_cannot_publish_its_ports_is_refused(
    stack, api, enrol
) -> None:
    user, other = await register(stack), await register(stack)
    home = await offline(stack, api, await enrol(), RANGE, user)
    busy = await offline(stack, api, await enrol(), RANGE, user, other)
    closed = await offline(stack, api, await enrol(), {**RANGE, "ports": None}, user)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        ours = await create(client, user, "web", device=home, ports=[WEB])
        assert ours.status_code == 202, ours.text
        theirs = await create(client, other, "web", device=busy, ports=[WEB])
        assert theirs.status_code == 202, theirs.text
        container = ours.json()["id"]
        for target, status, code in ((busy, 409, "port_taken"), (closed, 422, "ports_not_allowed")):
            refused = await client.post(
                f"/api/v1/containers/{container}/migrate",
                json={"device": target},
                headers=user.headers,
            )
            body = assert_problem(refused, status, code)
            assert (body["device"], body["port"]) == (target, 30080)
        migrations = await client.get(
            "/api/v1/migrations", params={"container": container}, headers=user.headers
        )
        assert migrations.json()["items"] == []
        assert (await client.get(f"/api/v1/containers/{container}", headers=user.headers)).json()[
            "device"
        ] == home
