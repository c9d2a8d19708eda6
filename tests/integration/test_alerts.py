"""Alert rules and alerts through the public API: rules on devices and containers, alerts
raised and cleared by the registry, announced as live events and posted to webhooks."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.test_gateway_api import assert_problem
from tests.support.beats import heartbeat
from tests.support.users import Account, register
from tests.support.wamp import device_session, probe_key
from tests.support.webhooks import webhook_receiver

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"


def beat(key: str, seq: int, cpu: float) -> dict[str, Any]:
    metrics = {"cpu_percent": cpu, "load_1m": 0.1, "memory_used": 1 << 30, "disk_free": 20 << 30}
    return heartbeat(key, seq=seq, metrics=metrics)


class ProbeDevice:
    """A device whose heartbeats the test sends itself, granted to some tenants."""

    def __init__(self, stack, enrol: Callable[[], Any]) -> None:
        self.stack = stack
        self.enrol = enrol
        self.key = probe_key()
        self.private_key = secrets.token_bytes(32)
        self.seq = 0
        self.enrolled = False

    @asynccontextmanager
    async def online(self, cpu: float = 12.5) -> AsyncIterator[Callable[[float], Any]]:
        """Joined and beating; yields a function that sends a heartbeat with a given CPU
        load. Leaving closes the session: the registry marks the device offline."""
        token = None if self.enrolled else await self.enrol()
        async with device_session(
            self.stack, key=self.key, private_key=self.private_key, token=token
        ) as uplink:
            self.enrolled = True

            async def send(load: float) -> None:
                self.seq += 1
                await uplink.call(
                    "edge.registry.heartbeat", beat(self.key, self.seq, load), timeout=5
                )

            await send(cpu)
            yield send


async def grant(api: httpx.AsyncClient, key: str, *accounts: Account) -> None:
    for account in accounts:
        granted = await api.post(
            f"/api/v1/devices/{key}/grants", json={"tenant": account.tenant_id}
        )
        assert granted.status_code == 201, granted.text


async def create_rule(client: httpx.AsyncClient, user: Account, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/alert-rules", json=body, headers=user.headers)


async def alerts_of(client: httpx.AsyncClient, user: Account, **params: Any) -> list[dict]:
    answer = await client.get("/api/v1/alerts", params=params, headers=user.headers)
    assert answer.status_code == 200, answer.text
    items: list[dict] = answer.json()["items"]
    return items


async def wait_alert(
    client: httpx.AsyncClient, user: Account, rule: dict, state: str, timeout: float = 10
) -> dict:
    async def found() -> dict | None:
        items = await alerts_of(client, user, rule=rule["id"], state=state)
        return items[0] if items else None

    alert: dict = await eventually(found, timeout=timeout)
    return alert


@asynccontextmanager
async def event_stream(client: httpx.AsyncClient, account: Account) -> AsyncIterator[list[str]]:
    """The account's /events lines as they arrive, from ``: connected`` on."""
    lines: list[str] = []

    async def collect() -> None:
        async with client.stream(
            "GET", "/api/v1/events", headers=account.headers, timeout=60
        ) as stream:
            async for line in stream.aiter_lines():
                lines.append(line)

    reader = asyncio.create_task(collect())
    try:
        await eventually(lambda: _connected(lines), timeout=5)
        yield lines
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def _connected(lines: list[str]) -> bool:
    return ": connected" in lines


def alert_events(lines: list[str], alert_id: str) -> list[str]:
    return [
        line for i, line in enumerate(lines) if lines[i - 1] == "event: alert" and alert_id in line
    ]


async def test_rules_are_created_listed_and_deleted(stack, client, api, enrol) -> None:
    user, stranger = await register(stack), await register(stack)
    device = ProbeDevice(stack, enrol)
    async with device.online():
        pass
    await grant(api, device.key, user)

    created = await create_rule(
        client, user, target_kind="device", target=device.key, metric="cpu_percent", op=">",
        threshold=80, for_seconds=30, webhook="https://hooks.example.com/a?x=1",
    )  # fmt: skip
    assert created.status_code == 201, created.text
    rule = created.json()
    assert {k: rule[k] for k in ("target_kind", "target", "device", "metric", "op")} == {
        "target_kind": "device",
        "target": device.key,
        "device": device.key,
        "metric": "cpu_percent",
        "op": ">",
    }
    assert (rule["threshold"], rule["for_seconds"], rule["name"]) == (80, 30, "cpu_percent > 80")
    assert rule["webhook"] == "https://hooks.example.com/a?x=1"
    assert (rule["tenant"], rule["container_name"], rule["firing_alert"]) == (
        user.tenant_id,
        None,
        None,
    )
    named = await create_rule(
        client, user, target_kind="device", target=device.key, metric="offline", name="Gone"
    )
    assert named.status_code == 201, named.text

    listed = (await client.get("/api/v1/alert-rules", headers=user.headers)).json()
    assert [r["id"] for r in listed["items"]] == [named.json()["id"], rule["id"]]
    assert listed["next_cursor"] is None
    paged = (
        await client.get("/api/v1/alert-rules", params={"limit": 1}, headers=user.headers)
    ).json()
    assert [r["id"] for r in paged["items"]] == [named.json()["id"]]
    rest = await client.get(
        "/api/v1/alert-rules", params={"cursor": paged["next_cursor"]}, headers=user.headers
    )
    assert [r["id"] for r in rest.json()["items"]] == [rule["id"]]
    one = await client.get(f"/api/v1/alert-rules/{rule['id']}", headers=user.headers)
    assert one.json() == rule
    theirs = (await client.get("/api/v1/alert-rules", headers=stranger.headers)).json()
    assert theirs["items"] == []

    deleted = await client.delete(f"/api/v1/alert-rules/{rule['id']}", headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/alert-rules/{rule['id']}", headers=user.headers)
    assert_problem(gone, 404, "alert_rule_not_found")
    again = await client.delete(f"/api/v1/alert-rules/{rule['id']}", headers=user.headers)
    assert_problem(again, 404, "alert_rule_not_found")

    audit = (await client.get("/api/v1/audit", headers=user.headers)).json()["items"]
    actions = [(e["action"], e["target"], e["outcome"]) for e in audit]
    assert ("alert_rule.create", f"alert_rule:{rule['id']}", "success") in actions
    assert ("alert_rule.delete", f"alert_rule:{rule['id']}", "success") in actions
    assert ("alert_rule.delete", f"alert_rule:{rule['id']}", "failure") in actions


async def test_bad_rules_are_refused_with_a_code(stack, client, api, enrol) -> None:
    user, stranger = await register(stack), await register(stack)
    mine, theirs = ProbeDevice(stack, enrol), ProbeDevice(stack, enrol)
    async with mine.online(), theirs.online():
        pass
    await grant(api, mine.key, user)
    await grant(api, theirs.key, stranger)
    # Both devices are offline now: containers wait, queued, but exist.
    queued = await client.post(
        "/api/v1/containers",
        json={"device": mine.key, "name": "web", "image": IMAGE},
        headers=user.headers,
    )
    assert queued.status_code == 202, queued.text
    container = queued.json()["id"]
    foreign = await client.post(
        "/api/v1/containers",
        json={"device": theirs.key, "name": "web", "image": IMAGE},
        headers=stranger.headers,
    )
    assert foreign.status_code == 202, foreign.text

    device = {"target_kind": "device", "target": mine.key}
    load = {**device, "metric": "cpu_percent"}
    own_box = {"target_kind": "container", "target": container}
    invalid, malformed = (422, "invalid_alert_rule"), (422, "validation_failed")
    cases: list[tuple[dict[str, Any], tuple[int, str], list[str] | None]] = [
        ({**device, "metric": "exited"}, invalid, ["metric"]),
        ({**device, "metric": "offline", "op": ">", "threshold": 1}, invalid, ["op"]),
        ({**load, "threshold": 1}, invalid, ["op"]),
        ({**load, "op": ">", "threshold": 120}, invalid, ["threshold"]),
        ({**own_box, "metric": "cpu_percent", "op": ">", "threshold": 1}, invalid, ["metric"]),
        ({**load, "op": "=>", "threshold": 1}, malformed, ["op"]),
        ({**device, "metric": "cpu_load"}, malformed, ["metric"]),
        ({**device, "metric": "offline", "for_seconds": 86401}, malformed, ["for_seconds"]),
        ({**device, "metric": "offline", "webhook": "ftp://example.com/x"}, malformed, ["webhook"]),
        (
            {**device, "metric": "offline", "webhook": "https://" + "a" * 2000},
            malformed,
            ["webhook"],
        ),
        (
            {**device, "target": "no_such_device", "metric": "offline"},
            (404, "device_not_found"),
            None,
        ),
        ({**device, "target": theirs.key, "metric": "offline"}, (404, "device_not_found"), None),
        (
            {**own_box, "target": foreign.json()["id"], "metric": "exited"},
            (404, "container_not_found"),
            None,
        ),
        (
            {**own_box, "target": "no-such-box", "metric": "exited"},
            (404, "container_not_found"),
            None,
        ),
    ]
    for body, (status, code), fields in cases:
        problem = assert_problem(await create_rule(client, user, **body), status, code)
        if fields is not None:
            assert problem["fields"] == fields, body
    assert (await client.get("/api/v1/alert-rules", headers=user.headers)).json()["items"] == []

    on_container = await create_rule(
        client, user, target_kind="container", target=container, metric="exited"
    )
    assert on_container.status_code == 201, on_container.text
    assert on_container.json()["device"] == mine.key
    assert on_container.json()["container_name"] == f"{user.username}-web"


async def test_device_alerts_fire_and_clear_with_events_and_webhook(
    stack, client, api, enrol
) -> None:
    user, stranger = await register(stack), await register(stack)
    device = ProbeDevice(stack, enrol)
    async with device.online():
        pass
    # The stranger sees the same device: its status events, never the user's alerts.
    await grant(api, device.key, user, stranger)

    async with (
        webhook_receiver() as receiver,
        event_stream(client, user) as user_lines,
        event_stream(client, stranger) as stranger_lines,
    ):
        load = await create_rule(
            client, user, target_kind="device", target=device.key, metric="cpu_percent",
            op=">", threshold=50, webhook=receiver.url,
        )  # fmt: skip
        offline = await create_rule(
            client, user, target_kind="device", target=device.key, metric="offline"
        )
        assert load.status_code == offline.status_code == 201, (load.text, offline.text)
        load_rule, offline_rule = load.json(), offline.json()
        # The device is offline since the rules exist: that fires at once.
        went = await wait_alert(client, user, offline_rule, "firing")
        assert went["message"] == f"{device.key} is offline (session closed)"

        async with device.online(cpu=93) as send:
            fired = await wait_alert(client, user, load_rule, "firing")
            assert fired["message"] == f"CPU of {device.key} at 93% (above 50%)"
            assert (fired["value"], fired["threshold"], fired["op"]) == (93, 50, ">")
            assert fired["tenant"] == user.tenant_id
            back = await wait_alert(client, user, offline_rule, "cleared")
            assert back["id"] == went["id"]
            assert back["cleared_message"] == f"{device.key} is online again"

            await send(12)
            cleared = await wait_alert(client, user, load_rule, "cleared")
            assert cleared["id"] == fired["id"]
            assert (
                cleared["cleared_message"]
                == f"CPU of {device.key} back to 12% (no longer above 50%)"
            )
            assert cleared["cleared_at"] >= cleared["raised_at"]

        async def posted_both() -> bool:
            return bool(receiver.posted("raised") and receiver.posted("cleared"))

        await eventually(posted_both, timeout=10)
        assert [(b["transition"], b["id"]) for b in receiver.bodies] == [
            ("raised", fired["id"]),
            ("cleared", fired["id"]),
        ]
        assert receiver.bodies[0]["message"] == fired["message"]

        async def delivered() -> dict | None:
            [alert] = await alerts_of(client, user, rule=load_rule["id"])
            return alert if (alert["webhook"] or {}).get("state") == "delivered" else None

        recorded = await eventually(delivered, timeout=10)
        assert recorded["webhook"]["transition"] == "cleared"

        # Leaving again fires a new offline alert: newest first in the list.
        again = await wait_alert(client, user, offline_rule, "firing")
        assert again["id"] != went["id"]
        listed = await alerts_of(client, user)
        assert [a["id"] for a in listed[:2]] == [again["id"], fired["id"]]
        assert len(listed) == 3

        async def streamed() -> bool:
            return len(alert_events(user_lines, fired["id"])) == 2

        await eventually(streamed, timeout=10)
        assert len(alert_events(user_lines, went["id"])) == 2
        assert not any(line == "event: alert" for line in stranger_lines)
        assert "event: device.status" in stranger_lines
    assert await alerts_of(client, stranger) == []


async def test_deleting_a_firing_rule_clears_its_alert(stack, client, api, enrol) -> None:
    user = await register(stack)
    device = ProbeDevice(stack, enrol)
    async with device.online():
        pass
    await grant(api, device.key, user)
    rule = (
        await create_rule(client, user, target_kind="device", target=device.key, metric="offline")
    ).json()
    firing = await wait_alert(client, user, rule, "firing")
    deleted = await client.delete(f"/api/v1/alert-rules/{rule['id']}", headers=user.headers)
    assert deleted.status_code == 204
    [cleared] = await alerts_of(client, user, rule=rule["id"])
    assert (cleared["id"], cleared["state"]) == (firing["id"], "cleared")
    assert cleared["cleared_message"] == "The rule was deleted"


async def test_container_and_real_agent_alerts(client, node) -> None:
    agent, user = node
    created = await client.post(
        "/api/v1/containers",
        json={"device": agent.key, "name": "watched", "image": IMAGE, "command": ["sleep", "600"]},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    container = created.json()
    exited = await create_rule(
        client, user, target_kind="container", target=container["id"], metric="exited"
    )
    busy = await create_rule(
        client, user, target_kind="device", target=agent.key, metric="cpu_percent", op=">=",
        threshold=0,
    )  # fmt: skip
    assert exited.status_code == busy.status_code == 201, (exited.text, busy.text)

    # Any load at all: fires from the agent's own heartbeats.
    loaded = await wait_alert(client, user, busy.json(), "firing")
    assert loaded["message"].startswith(f"CPU of {agent.hostname} at ")

    # Evaluated at least once by now (the other rule fired), with the container running.
    assert await alerts_of(client, user, rule=exited.json()["id"]) == []
    stop = await client.post(f"/api/v1/containers/{container['id']}/stop", headers=user.headers)
    assert stop.status_code == 200, stop.text
    down = await wait_alert(client, user, exited.json(), "firing")
    assert down["message"].startswith(
        f"Container {container['name']} on {agent.hostname} has exited"
    )
    start = await client.post(f"/api/v1/containers/{container['id']}/start", headers=user.headers)
    assert start.status_code == 200, start.text
    up = await wait_alert(client, user, exited.json(), "cleared")
    assert up["id"] == down["id"]
    assert up["cleared_message"].startswith(
        f"Container {container['name']} on {agent.hostname} is running"
    )
