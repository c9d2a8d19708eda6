"""The router lets a device act only in its own namespace, and services only with their ticket."""

import secrets

import pytest

from edgecloud_agent.uplink.errors import CallFailed, LoginRefused
from edgecloud_servicekit.wamp import WampUnavailable
from tests.support.wamp import device_session, probe_key, service_session

pytestmark = pytest.mark.stack

NOT_AUTHORIZED = "wamp.error.not_authorized"


async def ping(*_: object) -> str:
    return "pong"


@pytest.fixture
async def two_devices(stack, enrol):
    a_key, b_key = probe_key(), probe_key()
    a_secret, b_secret = secrets.token_bytes(32), secrets.token_bytes(32)
    async with (
        device_session(stack, key=a_key, private_key=a_secret, token=await enrol()) as a,
        device_session(stack, key=b_key, private_key=b_secret, token=await enrol()) as b,
    ):
        yield (a_key, a, a_secret), (b_key, b, b_secret)


async def test_device_registers_only_in_its_own_namespace(two_devices) -> None:
    (a_key, a, _), (b_key, _, _) = two_devices
    await a.register(f"edge.device.{a_key}.ping", ping)
    with pytest.raises(CallFailed) as refused:
        await a.register(f"edge.device.{b_key}.ping", ping)
    assert refused.value.error == NOT_AUTHORIZED
    # A key that merely starts like another device's is still someone else's.
    with pytest.raises(CallFailed):
        await a.register(f"edge.device.{a_key}x.ping", ping)


async def test_device_cannot_call_another_device_but_a_service_can(stack, two_devices) -> None:
    (_, a, _), (b_key, b, _) = two_devices
    await b.register(f"edge.device.{b_key}.ping", ping)
    with pytest.raises(CallFailed) as refused:
        await a.call(f"edge.device.{b_key}.ping", timeout=5)
    assert refused.value.error == NOT_AUTHORIZED
    async with service_session(stack, service="orchestrator") as orchestrator:
        await orchestrator.wait_joined(10)
        assert await orchestrator.call(f"edge.device.{b_key}.ping") == "pong"


async def test_device_cannot_take_over_cloud_procedures_or_meta_api(two_devices) -> None:
    (_, a, _), _ = two_devices
    with pytest.raises(CallFailed):
        await a.register("edge.registry.heartbeat", ping)
    with pytest.raises(CallFailed) as squat:
        await a.register("edge.registry.not_yet_registered", ping)
    assert squat.value.error == NOT_AUTHORIZED
    with pytest.raises(CallFailed) as meta:
        await a.call("wamp.session.list", timeout=5)
    assert meta.value.error == NOT_AUTHORIZED
    with pytest.raises(CallFailed) as publish:
        await a.publish("edge.event.device.status", {"key": "forged"}, timeout=5)
    assert publish.value.error == NOT_AUTHORIZED


async def test_device_cannot_log_in_as_another_with_its_own_key(stack, two_devices) -> None:
    _, (b_key, _, _) = two_devices
    with pytest.raises(LoginRefused) as refused:
        async with device_session(stack, key=b_key, private_key=secrets.token_bytes(32)):
            pass
    assert refused.value.reason == "edge.error.auth.key_mismatch"


async def test_device_cannot_hijack_an_enrolled_key_with_a_new_token(
    stack, two_devices, enrol
) -> None:
    _, (b_key, _, _) = two_devices
    with pytest.raises(LoginRefused) as refused:
        async with device_session(
            stack, key=b_key, private_key=secrets.token_bytes(32), token=await enrol()
        ):
            pass
    assert refused.value.reason == "edge.error.auth.key_mismatch"


async def test_a_second_session_with_the_right_key_is_accepted(stack, two_devices) -> None:
    (a_key, _, a_secret), _ = two_devices
    async with device_session(stack, key=a_key, private_key=a_secret) as again:
        assert again.connected


async def test_service_with_a_wrong_ticket_is_refused(stack) -> None:
    async with service_session(stack, service="registry", ticket="not-the-ticket") as impostor:
        with pytest.raises(WampUnavailable):
            await impostor.wait_joined(3)
        assert impostor.failure is not None
