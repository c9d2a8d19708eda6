"""The CLI against the real gateway: login, whoami, devices (with a real agent), API tokens,
logout."""

import json
import time
from pathlib import Path

import httpx
import pytest

from edgecloud_cli import config
from tests.support.agents import AgentFactory
from tests.support.stack import Stack

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
