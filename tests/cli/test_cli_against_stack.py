"""The CLI against the real gateway: login, whoami, devices (with a real agent), API tokens,
logout, and containers on a device that is offline."""

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from edgecloud_cli import config
from tests.support.agents import AgentFactory
from tests.support.beats import heartbeat
from tests.support.stack import Stack
from tests.support.users import Account, register
from tests.support.wamp import device_session, probe_key

from .conftest import Run

pytestmark = pytest.mark.stack


def wait_for_device(cli: Run, key: str, *, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    seen: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        result = cli("devices", "--json")
        assert result.exit_code == 0, result.output
        seen = json.loads(result.stdout)
        for item in seen:
            if item["key"] == key and item["status"] == "online":
                return item
        time.sleep(0.2)
    raise AssertionError(f"{key} not online within {timeout}s; devices: {seen}")


def test_login_whoami_devices_logout(
    cli: Run, stack: Stack, agents: AgentFactory, config_home: Path
) -> None:
    url = stack.url("gateway")

    login = cli("--url", url, "login", "--username", "admin", "--password-stdin",
                input=f"{stack.admin_password}\n")  # fmt: skip
    assert login.exit_code == 0, login.output
    assert login.stdout.startswith(f"Logged in as admin to {url} (token expires ")
    stored = config.load()
    assert stored is not None
    assert stored.url == url
    assert stored.token
    credentials = config_home / "edgecloud" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600

    # From here on the URL comes from the stored login.
    whoami = cli("whoami")
    assert whoami.exit_code == 0, whoami.output
    assert whoami.stdout == "user:   admin\ntenant: operators\nroles:  operator\n"

    enrolment = httpx.post(
        f"{url}/api/v1/devices/enrolments",
        json={"note": "cli test"},
        headers={"Authorization": f"Bearer {stored.token}"},
        timeout=10,
    )
    assert enrolment.status_code == 201, enrolment.text
    agent = agents.start(token=enrolment.json()["token"], location="cli bench")
    device = wait_for_device(cli, agent.key, timeout=15)
    assert device["name"] == agent.hostname
    assert device["location"] == "cli bench"
    assert device["link"] == "wan"

    table = cli("devices")
    assert table.exit_code == 0, table.output
    assert agent.key in table.stdout

    logout = cli("logout")
    assert logout.exit_code == 0, logout.output
    assert logout.stdout == f"Logged out of {url}\n"
    assert config.load() == config.Credentials(url, "admin", None, None)

    # The server revoked the token, not just the file forgot it.
    revoked = cli("--token", stored.token, "whoami")
    assert revoked.exit_code == 1
    assert "(token_invalid)" in revoked.stderr
    assert "edgecloud login" in revoked.stderr


def test_tokens_create_list_revoke(cli: Run, stack: Stack) -> None:
    url = stack.url("gateway")
    login = cli("--url", url, "login", "--username", "admin", "--password-stdin",
                input=f"{stack.admin_password}\n")  # fmt: skip
    assert login.exit_code == 0, login.output

    created = cli("tokens", "create", "cli-test", "--days", "7")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("ec_")
    assert cli("--token", token, "whoami").exit_code == 0

    listed = cli("tokens", "list")
    assert listed.exit_code == 0, listed.output
    assert "cli-test" in listed.stdout
    assert token not in listed.stdout
    stored = config.load()
    assert stored is not None
    items = httpx.get(
        f"{url}/api/v1/tokens", headers={"Authorization": f"Bearer {stored.token}"}, timeout=10
    ).json()["items"]
    token_id = next(item["id"] for item in items if item["name"] == "cli-test")

    revoked = cli("tokens", "revoke", token_id)
    assert revoked.exit_code == 0, revoked.output
    refused = cli("--token", token, "whoami")
    assert refused.exit_code == 1
    assert "token_invalid" in refused.stderr


async def offline_device(
    stack: Stack, api: httpx.AsyncClient, enrol: Callable[[], Awaitable[str]]
) -> tuple[Account, str]:
    """A new tenant's account, and a device granted to it, known to the registry from one
    heartbeat, then gone."""
    account = await register(stack)
    key = probe_key()
    async with device_session(stack, key=key, token=await enrol()) as uplink:
        await uplink.call("edge.registry.heartbeat", heartbeat(key), timeout=5)
    granted = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": account.tenant_id})
    assert granted.status_code == 201, granted.text
    return account, key


async def test_containers_on_an_offline_device_are_queued(
    cli: Run, stack: Stack, api: httpx.AsyncClient, enrol: Callable[[], Awaitable[str]]
) -> None:
    account, key = await offline_device(stack, api, enrol)
    env = {"EDGECLOUD_URL": stack.url("gateway"), "EDGECLOUD_TOKEN": account.token}
    name = f"{account.username}-web"

    # --progress: the event stream is followed (and stopped) against the real gateway too.
    run = cli("run", "edgecloud/busybox:latest", "--name", "web", "--device", key,
              "-e", "GREETING=hi", "--memory", "64m", "--progress", "--", "sleep", "60",
              env=env)  # fmt: skip
    assert run.exit_code == 0, run.output
    container_id = run.stdout.strip()
    queued = re.fullmatch(
        rf"device {key} is offline: the create is queued as command (\S+); it runs when the "
        rf"device is back \(edgecloud inspect {container_id}\)\n",
        run.stderr,
    )
    assert queued, run.stderr
    create_command = queued[1]

    listed = cli("ps", "--json", env=env)
    assert listed.exit_code == 0, listed.output
    [item] = json.loads(listed.stdout)
    assert (item["id"], item["name"], item["device"], item["state"]) == (
        container_id, name, key, "pending"
    )  # fmt: skip
    assert item["limits"]["memory"] == 64 << 20
    table = cli("ps", "--device", key, env=env)
    assert table.exit_code == 0, table.output
    assert f"{container_id[:12]}  {name}" in table.stdout
    assert "pending" in table.stdout

    inspected = cli("inspect", "web", env=env)
    assert inspected.exit_code == 0, inspected.output
    shown = json.loads(inspected.stdout)
    assert (shown["id"], shown["state"], shown["desired_state"]) == (
        container_id, "pending", "running"
    )  # fmt: skip
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        command = await client.get(f"/api/v1/commands/{create_command}", headers=account.headers)
    assert command.status_code == 200, command.text
    assert (command.json()["action"], command.json()["state"]) == ("create", "queued")

    removed = cli("rm", container_id[:8], env=env)
    assert removed.exit_code == 0, removed.output
    assert removed.stderr.startswith(f"device {key} is offline: the removal is queued as command ")
    assert removed.stdout == f"{name}: pending (remove queued)\n"

    after = cli("inspect", container_id, env=env)
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["desired_state"] == "removed"


async def test_inspect_shows_the_command_a_container_waits_for(
    cli: Run, stack: Stack, api: httpx.AsyncClient, enrol: Callable[[], Awaitable[str]]
) -> None:
    account, key = await offline_device(stack, api, enrol)
    env = {"EDGECLOUD_URL": stack.url("gateway"), "EDGECLOUD_TOKEN": account.token}
    run = cli("run", "edgecloud/busybox:latest", "--name", "web", "--device", key, env=env)
    assert run.exit_code == 0, run.output

    inspected = cli("inspect", "web", env=env)
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["command"] is not None
    assert re.fullmatch(
        r"command \S+: create queued \(created .*, 0 attempts\)\n", inspected.stderr
    )
