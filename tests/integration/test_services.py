"""Every service runs, answers /healthz and /metrics, and trusts only signed identities."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from tests.support.stack import SERVICES

pytestmark = pytest.mark.stack

OPERATOR = Identity(user_id="u-1", username="op", tenant_id="t-ops", roles=frozenset({"operator"}))


@pytest.mark.parametrize("service", list(SERVICES))
async def test_health_and_metrics(stack, service) -> None:
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=5) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["checks"] == {"database": "ok", "wamp": "ok"}
        live = await client.get("/livez")
        assert live.json() == {"status": "ok", "service": service}
        metrics = await client.get("/metrics", headers=stack.metrics_headers(service))
        assert metrics.status_code == 200
        assert "edgecloud_http_request_duration_seconds" in metrics.text
        assert f'service="{service}"' in metrics.text


def token(stack, identity: Identity = OPERATOR, **overrides) -> str:
    options = {"secret": stack.internal_secret, "audience": "registry", **overrides}
    return sign_identity(identity, **options)


@pytest.mark.parametrize(
    ("case", "headers", "code"),
    [
        ("no token", {}, "identity_missing"),
        ("garbage", {IDENTITY_HEADER: "not-a-jwt"}, "identity_invalid"),
        ("wrong secret", "wrong-secret", "identity_invalid"),
        ("wrong audience", "wrong-audience", "identity_invalid"),
        ("expired", "expired", "identity_expired"),
    ],
)
async def test_registry_refuses_unsigned_or_stale_identities(stack, case, headers, code) -> None:
    if headers == "wrong-secret":
        headers = {IDENTITY_HEADER: token(stack, secret="s" * 48)}
    elif headers == "wrong-audience":
        headers = {IDENTITY_HEADER: token(stack, audience="orchestrator")}
    elif headers == "expired":
        headers = {IDENTITY_HEADER: token(stack, now=datetime.now(UTC) - timedelta(minutes=5))}
    async with httpx.AsyncClient(base_url=stack.url("registry"), timeout=5) as client:
        response = await client.get("/v1/devices", headers=headers)
    assert response.status_code == 401, case
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_registry_scopes_devices_by_tenant(stack, enrol) -> None:

    from tests.support.beats import heartbeat
    from tests.support.wamp import device_session, probe_key

    key = probe_key()
    async with device_session(stack, key=key, token=await enrol()) as uplink:
        await uplink.call("edge.registry.heartbeat", heartbeat(key), timeout=5)

    member = Identity(user_id="u-2", username="m", tenant_id="t-acme", roles=frozenset({"member"}))
    as_member = {IDENTITY_HEADER: token(stack, member)}
    as_operator = {IDENTITY_HEADER: token(stack)}
    async with httpx.AsyncClient(base_url=stack.url("registry"), timeout=5) as client:
        listed = (await client.get("/v1/devices", headers=as_member)).json()
        assert key not in [d["key"] for d in listed["items"]]
        assert (await client.get(f"/v1/devices/{key}", headers=as_member)).status_code == 404

        forbidden = await client.post(
            f"/v1/devices/{key}/grants", json={"tenant": "t-acme"}, headers=as_member
        )
        assert forbidden.status_code == 403
        granted = await client.post(
            f"/v1/devices/{key}/grants", json={"tenant": "t-acme"}, headers=as_operator
        )
        assert granted.status_code == 201
        again = await client.post(
            f"/v1/devices/{key}/grants", json={"tenant": "t-acme"}, headers=as_operator
        )
        assert again.status_code == 200

        assert (await client.get(f"/v1/devices/{key}", headers=as_member)).status_code == 200
        listed = (await client.get("/v1/devices", headers=as_member)).json()
        assert [d["key"] for d in listed["items"]] == [key]


async def test_the_gateways_metrics_need_the_metrics_token(stack, api) -> None:
    """The gateway's port is public: neither a stranger nor a user (even an operator, whose
    token is not the metrics token) scrapes it."""
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=5) as client:
        for answer in (await client.get("/metrics"), await api.get("/metrics")):
            assert answer.status_code == 401, answer.text
            assert answer.json()["code"] == "metrics_token_required"
            assert "edgecloud_http_request_duration_seconds" not in answer.text
