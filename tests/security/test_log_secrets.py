"""No secret reaches a log. Real flows run through a small stack of its own at DEBUG level
(passwords, API and dashboard tokens, CSRF, enrolment, the node's key, WAMP tickets, the
internal secret, transfer grants, exec), then every line any process wrote is searched for
each secret value and for anything shaped like one of our tokens or a signed grant."""

import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import aiohttp
import httpx
import pytest

from edgecloud_agent.deploy.download import DownloadFailed, download
from edgecloud_contracts.logs import line_formatter
from tests.conftest import eventually
from tests.integration.conftest import remove_tenant_containers
from tests.integration.test_applications import deploy, finished, running_container, tar_of
from tests.support.agents import AgentFactory
from tests.support.brokers import NodeBroker
from tests.support.stack import Stack
from tests.support.users import register

pytestmark = pytest.mark.stack

TOKEN_SHAPES = {
    # Bearer, enrolment and invitation tokens: a prefix and 43 URL-safe characters.
    "token": re.compile(r"\bec[ei]?_[A-Za-z0-9_-]{32,}"),
    # Signed identities between services and transfer grants (HS256 JWTs).
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
    "grant": re.compile(r"grant=[A-Za-z0-9_.-]{16,}"),
}


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack-debug")
    started = Stack(
        backend="sqlite",
        workdir=workdir,
        only=("registry", "gateway", "orchestrator", "storage"),
        extra_env={
            "EDGECLOUD_LOG_LEVEL": "DEBUG",
            "AGENT_LOG_LEVEL": "DEBUG",
            "EDGECLOUD_ROUTER_LOGLEVEL": "info",
        },
    )
    with started.running():
        yield started


def logs_of(*directories: Path) -> dict[Path, str]:
    return {
        path: path.read_text(errors="replace")
        for directory in directories
        for path in sorted(directory.rglob("*.log"))
    }


def leaks(logs: dict[Path, str], secret_values: dict[str, str]) -> list[str]:
    found = []
    for path, text in logs.items():
        for number, line in enumerate(text.splitlines(), 1):
            for name, value in secret_values.items():
                if value in line:
                    found.append(f"{path.name}:{number}: {name}: {line[:300]}")
            for shape, pattern in TOKEN_SHAPES.items():
                if pattern.search(line):
                    found.append(f"{path.name}:{number}: looks like a {shape}: {line[:300]}")
    return found


async def test_no_secret_reaches_any_log(
    debug_stack: Stack, tmp_path_factory: pytest.TempPathFactory, node_broker: NodeBroker
) -> None:
    stack = debug_stack
    known: dict[str, str] = {
        "admin password": stack.admin_password,
        "internal secret": stack.internal_secret,
        **{f"{service} ticket": ticket for service, ticket in stack.tickets.items()},
    }
    agents = AgentFactory(stack, tmp_path_factory.mktemp("debug-agents"), node_broker)
    tenant = None
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        try:
            # A failed sign-in with a password that is almost the right one.
            wrong = f"{stack.admin_password}-{secrets.token_urlsafe(8)}"
            known["wrong password"] = wrong
            failed = await client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": wrong}
            )
            assert failed.status_code == 401, failed.text

            # The dashboard's way: session cookie plus CSRF token, making an API token.
            signed_in = await client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": stack.admin_password}
            )
            assert signed_in.status_code == 200, signed_in.text
            operator_token = signed_in.json()["access_token"]
            csrf = signed_in.json()["csrf_token"]
            known |= {"login token": operator_token, "csrf token": csrf}
            assert client.cookies.get("edgecloud_session") == operator_token
            made = await client.post(
                "/api/v1/tokens",
                json={"name": "ci", "expires_in_days": 1},
                headers={"X-CSRF-Token": csrf},
            )
            assert made.status_code == 201, made.text
            api_token = made.json()["token"]
            known["api token"] = api_token
            client.cookies.clear()
            operator = {"Authorization": f"Bearer {api_token}"}
            assert (await client.get("/api/v1/me", headers=operator)).status_code == 200

            # A node enrols with a one-time token and logs in with its key (cryptosign).
            enrolment = await client.post(
                "/api/v1/devices/enrolments", json={"note": "logs"}, headers=operator
            )
            assert enrolment.status_code == 201, enrolment.text
            known["enrolment token"] = enrolment.json()["token"]
            agent = agents.start(token=enrolment.json()["token"])

            async def online() -> bool:
                found = await client.get(f"/api/v1/devices/{agent.key}", headers=operator)
                return found.status_code == 200 and found.json()["status"] == "online"

            await eventually(online, timeout=30)
            credential = json.loads((agent.state_dir / "credential.json").read_text())
            known["node private key"] = credential["private_key"]

            # A tenant runs a container, execs in it and deploys an application: the node
            # fetches the archive and script over URLs carrying transfer grants.
            user = await register(stack)
            tenant = user.tenant_id
            known |= {"user password": user.password, "user token": user.token}
            granted = await client.post(
                f"/api/v1/devices/{agent.key}/grants",
                json={"tenant": user.tenant_id},
                headers=operator,
            )
            assert granted.status_code == 201, granted.text
            container = await running_container(
                client, user, "logs", device=agent.key, command=["sleep", "600"]
            )
            ran = await client.post(
                f"/api/v1/containers/{container['id']}/exec",
                json={"cmd": ["echo", "hello"], "timeout_s": 20},
                headers=user.headers,
            )
            assert ran.status_code == 200, ran.text
            app = tar_of({"hello.txt": b"hi\n"})
            deployed = await deploy(client, user, container["id"], app, b"cat hello.txt\n")
            done = await finished(client, user, deployed["deployment"])
            assert done["state"] == "succeeded", done

            # Signing out: the API token and the login token are revoked.
            for bearer in (api_token, operator_token):
                out = await client.post(
                    "/api/v1/auth/logout", headers={"Authorization": f"Bearer {bearer}"}
                )
                assert out.status_code == 204, out.text
        finally:
            agents.stop_all()
            if tenant is not None:
                remove_tenant_containers(tenant)

    logs = logs_of(stack.workdir / "logs", agent.state_dir.parent)
    assert {path.name for path in logs} >= {
        "router.log",
        "gateway.log",
        "registry.log",
        "orchestrator.log",
        "storage.log",
        f"{agent.state_dir.name}.log",
    }
    # The scan sees what it should: DEBUG lines were written, and the ids it may print.
    every_line = "\n".join(logs.values())
    assert '"level": "debug"' in every_line
    assert agent.key in every_line
    assert leaks(logs, known) == []


GRANT = "eyJhbGciOiJIUzI1NiJ9.eyJhcnQiOiJhIiwiZGlyIjoiZG93biJ9.c2lnbmF0dXJlLW9mLXRoZS1ncmFudA"
GRANT_URL = f"http://127.0.0.1:8000/api/v1/transfers/1b2c?grant={GRANT}"
BEARER = "ec_" + "A1b2_C3-" * 5 + "xyz"


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "plain"])
def test_log_lines_mask_secrets_that_reach_them_anyway(json_lines: bool) -> None:
    """The one formatter of every service and agent masks grants in URLs, bearer headers,
    our tokens and signed JWTs, in the message and in a traceback, and keeps the rest."""
    formatter = line_formatter(json_lines=json_lines)
    try:
        raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {GRANT_URL}")
    except aiohttp.ClientError:
        record = logging.LogRecord(
            "edgecloud_agent.deploy",
            logging.WARNING,
            __file__,
            1,
            "download of %s failed (Authorization: Bearer %s, enrolment_token=%s)",
            (GRANT_URL, BEARER, "ece_" + "z" * 43),
            sys.exc_info(),
        )
    line = formatter.format(record)
    for secret in (GRANT, BEARER, "ece_", "zzzz"):
        assert secret not in line
    assert "/api/v1/transfers/1b2c?grant=<redacted>" in line
    assert "Bearer <redacted>" in line
    assert "ConnectionTimeoutError" in line
    if json_lines:
        assert json.loads(line)["level"] == "warning"


class _TimingOut:
    """An aiohttp session whose every request times out connecting, as aiohttp words it."""

    def get(self, url: str, **_: object) -> object:
        raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}")


async def test_a_failed_download_does_not_quote_its_grant(tmp_path: Path) -> None:
    """The failure goes into the node's log and the deployment record the tenant reads."""
    with pytest.raises(DownloadFailed) as failed:
        await download(
            cast(aiohttp.ClientSession, _TimingOut()),
            GRANT_URL,
            tmp_path / "app.tar",
            sha256="0" * 64,
            size=10,
            attempts=2,
            backoff_s=0.01,
        )
    assert failed.value.code == "download_failed"
    assert "ConnectionTimeoutError" in str(failed.value)
    assert GRANT not in str(failed.value)
