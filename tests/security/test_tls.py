"""TLS as a setting: the router serves wss:// and the gateway https:// with a certificate from
a private authority made at test time; services, agents and the CLI trust that authority
through their CA file setting, and refuse a server they cannot verify."""

import asyncio
import logging
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgecloud_agent.uplink.errors import LoginRefused
from edgecloud_agent.uplink.wamp import Backoff, Login, Uplink
from edgecloud_cli.client import ApiError, Client
from edgecloud_servicekit.wamp import WampLink, WampUnavailable
from tests.conftest import eventually
from tests.support.agents import AgentFactory
from tests.support.brokers import NodeBroker
from tests.support.stack import Stack
from tests.support.tls import make_certificates
from tests.support.wamp import probe_key

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The router and the two services an enrolment needs, on TLS."""
    workdir = tmp_path_factory.mktemp("stack-tls")
    started = Stack(
        backend="sqlite",
        workdir=workdir,
        tls=make_certificates(workdir / "tls"),
        only=("registry", "gateway"),
    )
    with started.running():
        yield started


def trusting(stack: Stack) -> ssl.SSLContext:
    assert stack.tls is not None
    return ssl.create_default_context(cafile=str(stack.tls.ca_file))


def gateway_client(stack: Stack, **options: object) -> httpx.AsyncClient:
    """The public API over HTTPS, trusting the test's authority."""
    return httpx.AsyncClient(
        base_url=stack.url("gateway"), verify=trusting(stack), timeout=10, **options
    )


async def operator_token(stack: Stack) -> str:
    async with gateway_client(stack) as client:
        answer = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": stack.admin_password}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


async def test_services_join_the_router_over_wss(tls_stack: Stack) -> None:
    """Each service's /healthz is 200 only with its WAMP session up: they joined over wss://
    trusting EDGECLOUD_CA_FILE; a session of our own does too."""
    assert tls_stack.router_url.startswith("wss://")
    async with gateway_client(tls_stack) as client:
        health = await client.get("/healthz")
    assert health.status_code == 200, health.text
    assert tls_stack.tls is not None
    link = WampLink(
        url=tls_stack.router_url,
        realm="edgecloud",
        authid="orchestrator",
        ticket=tls_stack.tickets["orchestrator"],
        ca_file=tls_stack.tls.ca_file,
    )
    async with link:
        await link.wait_joined(15)


async def assert_never_joins(stack: Stack, url: str) -> None:
    """A service's link to ``url`` with no CA file of its own keeps failing to join."""
    link = WampLink(
        url=url, realm="edgecloud", authid="orchestrator", ticket=stack.tickets["orchestrator"]
    )
    async with link:
        with pytest.raises(WampUnavailable):
            await link.wait_joined(2)


async def test_a_service_without_the_ca_does_not_join(tls_stack: Stack) -> None:
    """No silent fall-back to an unverified connection: without the authority the link
    keeps failing the handshake (the system's CAs do not know ours)."""
    await assert_never_joins(tls_stack, tls_stack.router_url)


async def test_an_agent_enrols_and_comes_online_over_wss(
    tls_stack: Stack, tmp_path_factory: pytest.TempPathFactory, node_broker: NodeBroker
) -> None:
    headers = {"Authorization": f"Bearer {await operator_token(tls_stack)}"}
    async with gateway_client(tls_stack, headers=headers) as api:
        created = await api.post("/api/v1/devices/enrolments", json={"note": "tls"})
        assert created.status_code == 201, created.text
        agents = AgentFactory(tls_stack, tmp_path_factory.mktemp("tls-agents"), node_broker)
        try:
            agent = agents.start(token=created.json()["token"])

            async def online() -> bool:
                answer = await api.get(f"/api/v1/devices/{agent.key}")
                return answer.status_code == 200 and answer.json()["status"] == "online"

            await eventually(online, timeout=30)
        finally:
            agents.stop_all()
    assert "wss://" in agent.process.log_path.read_text()


async def test_an_agent_uplink_refuses_a_router_it_cannot_verify(
    tls_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """The uplink without the authority fails the TLS handshake (and says why); with it, the
    same login gets as far as the router's refusal of an unknown device."""
    caplog.set_level(logging.DEBUG, logger="edgecloud_agent.uplink.wamp")
    login = Login(device_key=probe_key(), private_key=secrets.token_bytes(32), enrolment_token=None)
    untrusting = Uplink(
        url=tls_stack.router_url, realm="edgecloud", login=login, backoff=Backoff(0.1, 0.2)
    )
    running = asyncio.create_task(untrusting.run())
    try:
        await eventually(
            lambda: _logged(caplog, "CERTIFICATE_VERIFY_FAILED"), timeout=10, interval=0.05
        )
        assert not running.done()
        assert not untrusting.connected
    finally:
        await untrusting.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    trusting_uplink = Uplink(
        url=tls_stack.router_url,
        realm="edgecloud",
        login=login,
        backoff=Backoff(0.1, 0.2),
        tls=trusting(tls_stack),
    )
    with pytest.raises(LoginRefused):
        await asyncio.wait_for(trusting_uplink.run(), 15)


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def test_the_cli_signs_in_over_https_with_its_ca_bundle(tls_stack: Stack) -> None:
    assert tls_stack.tls is not None
    url = tls_stack.url("gateway")
    with Client(url, ca_bundle=tls_stack.tls.ca_file) as client:
        login = client.login(username="admin", password=tls_stack.admin_password)
    with Client(url, token=login["access_token"], ca_bundle=tls_stack.tls.ca_file) as client:
        assert client.me()["user"]["username"] == "admin"
        client.logout()


def test_the_cli_refuses_a_gateway_it_cannot_verify(
    tls_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the system's authorities nor another private CA vouch for the gateway.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    other = make_certificates(tmp_path / "other", "another CA")
    for bundle in (None, other.ca_file):
        with (
            Client(tls_stack.url("gateway"), ca_bundle=bundle) as client,
            pytest.raises(ApiError) as refused,
        ):
            client.login(username="admin", password=tls_stack.admin_password)
        assert refused.value.code == "certificate_not_trusted"
        assert refused.value.detail.startswith("cannot verify the certificate of https://")


async def test_plain_http_and_ws_to_the_tls_ports_fail(tls_stack: Stack) -> None:
    gateway = tls_stack.url("gateway").replace("https://", "http://")
    router = f"http://127.0.0.1:{tls_stack.router_port}/"
    async with httpx.AsyncClient(timeout=5) as plain:
        for url in (gateway, router):
            with pytest.raises(httpx.TransportError):
                await plain.get(url)
    await assert_never_joins(tls_stack, tls_stack.router_url.replace("wss://", "ws://"))


async def test_dashboard_cookies_are_secure_under_tls(tls_stack: Stack) -> None:
    """The stack runs in test mode, where cookies are not Secure by default: serving HTTPS
    makes them so."""
    async with gateway_client(tls_stack) as client:
        answer = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": tls_stack.admin_password}
        )
    assert answer.status_code == 200, answer.text
    cookies = answer.headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert all("secure" in cookie.lower().split("; ") for cookie in cookies), cookies


async def test_the_gateway_tells_browsers_to_keep_to_https(tls_stack: Stack) -> None:
    """Strict-Transport-Security on every answer served over TLS, a page and a problem alike
    (over plain HTTP it is never sent: tests/security/test_security_headers.py)."""
    async with gateway_client(tls_stack) as client:
        for answer in (await client.get("/login"), await client.get("/api/v1/me")):
            assert answer.headers["strict-transport-security"] == "max-age=31536000"
