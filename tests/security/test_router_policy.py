"""The router lets a device act only in its own namespace, and services only with their ticket."""

import asyncio
import secrets

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from edgecloud_agent.uplink.errors import CallFailed, LoginRefused
from edgecloud_contracts import uris
from edgecloud_servicekit.wamp import WampUnavailable
from tests.conftest import ONE_DATABASE
from tests.security.raw_wamp import Refused, raw_device, raw_session
from tests.support.wamp import device_session, probe_key, service_session

pytestmark = [pytest.mark.stack, ONE_DATABASE]

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
        async with device_session(stack, key=b_key):
            pass
    assert refused.value.reason == "edge.error.auth.key_mismatch"


async def test_device_cannot_hijack_an_enrolled_key_with_a_new_token(
    stack, two_devices, enrol
) -> None:
    _, (b_key, _, _) = two_devices
    with pytest.raises(LoginRefused) as refused:
        async with device_session(stack, key=b_key, token=await enrol()):
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


async def _nothing(*_: object) -> None:
    return None


async def test_device_publishes_and_subscribes_only_in_its_own_namespace(stack, enrol) -> None:
    a_key, b_key = probe_key(), probe_key()
    async with (
        raw_device(stack, key=a_key, token=await enrol()) as a,
        raw_device(stack, key=b_key, token=await enrol()) as b,
    ):
        acknowledged = PublishOptions(acknowledge=True)
        # Its own namespace: allowed (the control).
        await a.subscribe(_nothing, f"edge.device.{a_key}.news")
        await a.publish(f"edge.device.{a_key}.news", "hello", options=acknowledged)
        # Another device's namespace, cloud events and the router's meta events: refused.
        heard: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()
        await b.subscribe(lambda *args: heard.put_nowait(args), f"edge.device.{b_key}.news")
        refused_topics = [
            (f"edge.device.{b_key}.news", "exact"),
            (f"edge.device.{a_key}x.news", "exact"),
            (f"edge.device.{a_key}", "prefix"),  # would also match edge.device.<a_key>x...
            ("edge.device.", "prefix"),
            ("edge.device..news", "wildcard"),
            (uris.EVENT_CONTAINER_STATUS, "exact"),
            (uris.EVENT_DEVICE_STATUS, "exact"),
            (uris.EVENT_COMMAND, "exact"),
            (uris.EVENT_MIGRATION, "exact"),
            (uris.EVENT_ALERT, "exact"),
            (uris.EVENT_DEPLOYMENT, "exact"),
            ("edge.event.", "prefix"),
            ("edge.", "prefix"),
            ("", "prefix"),
            (uris.META_SESSION_ON_JOIN, "exact"),
            ("wamp.", "prefix"),
        ]
        for topic, match in refused_topics:
            with pytest.raises(ApplicationError) as subscribe:
                await a.subscribe(_nothing, topic, options=SubscribeOptions(match=match))
            assert subscribe.value.error == NOT_AUTHORIZED, (topic, match)
        for topic in [
            f"edge.device.{b_key}.news",
            uris.EVENT_CONTAINER_STATUS,
            uris.EVENT_COMMAND,
            uris.EVENT_MIGRATION,
            "wamp.session.on_leave",
        ]:
            with pytest.raises(ApplicationError) as publish:
                await a.publish(topic, {"forged": True}, options=acknowledged)
            # The router's own topics are not even valid to publish to.
            assert publish.value.error in (NOT_AUTHORIZED, "wamp.error.invalid_uri"), topic
        # B's own publication still reaches B, and A's refused one never did.
        await b.publish(
            f"edge.device.{b_key}.news",
            "own",
            options=PublishOptions(acknowledge=True, exclude_me=False),
        )
        # The first event B hears is its own: A's refused one never reached it.
        async with asyncio.timeout(5):
            assert await heard.get() == ("own",)
        assert heard.empty()


async def test_device_cannot_call_cloud_procedures_not_meant_for_devices(stack, enrol) -> None:
    key = probe_key()
    async with raw_device(stack, key=key, token=await enrol()) as a:
        for procedure in [
            uris.AUTHENTICATE_DEVICE,
            "edge.router.authorize_device",
            uris.META_SESSION_KILL_BY_AUTHID,
            uris.META_SESSION_COUNT,
            "wamp.session.list",
            "wamp.registration.list",
            "wamp.registration.match",
            "wamp.subscription.list",
            "edge.registry.no_such_procedure",
        ]:
            with pytest.raises(ApplicationError) as refused:
                await a.call(procedure, key)
            assert refused.value.error == NOT_AUTHORIZED, procedure


async def _refusal(stack, **login) -> str:
    with pytest.raises(Refused) as refused:
        async with raw_session(stack, **login):
            pass
    return refused.value.reason


async def test_services_cannot_be_impersonated(stack, enrol) -> None:
    # A service's ticket under another service's name.
    assert (
        await _refusal(
            stack,
            authmethods=["ticket"],
            authid="registry",
            authrole="service",
            ticket=stack.tickets["orchestrator"],
        )
        == "wamp.error.not_authorized"
    )
    # A device trying ticket auth (as a service, or as itself).
    for authid in ("gateway", probe_key()):
        assert (
            await _refusal(
                stack, authmethods=["ticket"], authid=authid, authrole="service", ticket="guess"
            )
            == "wamp.error.not_authorized"
        )
    # Anonymous, asking for the service role or none.
    for role in ("service", None):
        assert await _refusal(stack, authmethods=["anonymous"], authid=None, authrole=role) in (
            "wamp.error.not_authorized",
            "wamp.error.no_auth_method",
        )
    # A device whose key is a service's name is refused, with a valid enrolment token.
    for service in ("registry", "gateway", "orchestrator", "storage"):
        assert (
            await _refusal(
                stack,
                authmethods=["cryptosign"],
                authid=service,
                authrole="service",
                private_key=secrets.token_bytes(32),
                enrolment_token=await enrol(),
            )
            == "edge.error.auth.unknown_device"
        )
    # A device asking for the service role gets the device role and nothing more.
    key = probe_key()
    async with raw_session(
        stack,
        authmethods=["cryptosign"],
        authid=key,
        authrole="service",
        private_key=secrets.token_bytes(32),
        enrolment_token=await enrol(),
    ) as claimed:
        assert claimed.joined.result().authrole == uris.ROLE_DEVICE
        with pytest.raises(ApplicationError) as refused:
            await claimed.call("wamp.session.list")
        assert refused.value.error == NOT_AUTHORIZED


async def test_revoked_device_loses_its_live_session_at_once_and_cannot_return(
    stack, api, enrol
) -> None:
    key, secret = probe_key(), secrets.token_bytes(32)
    async with (
        service_session(stack, service="orchestrator") as cloud,
        raw_device(stack, key=key, private_key=secret, token=await enrol()) as device,
    ):
        await cloud.wait_joined(10)
        await device.register(ping, f"edge.device.{key}.ping")
        assert await cloud.is_registered(f"edge.device.{key}.ping")
        revoked = await api.post(f"/api/v1/devices/{key}/revoke")
        assert revoked.status_code == 204, revoked.text
        # Killed by the router now, not at the next liveness window (minutes on a real node).
        async with asyncio.timeout(10):
            reason, _ = await device.ended
        assert reason in ("wamp.close.revoked", "disconnected")
        assert not await cloud.is_registered(f"edge.device.{key}.ping")
    assert (
        await _refusal(
            stack, authmethods=["cryptosign"], authid=key, authrole="device", private_key=secret
        )
        == "edge.error.auth.revoked"
    )
