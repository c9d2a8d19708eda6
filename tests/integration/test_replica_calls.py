"""Calls to a procedure that two replicas share (``invoke: roundrobin``) on the real router,
when the replica taking a call dies mid-call: the caller calls again and the other replica
answers, both a service's call (WampLink) and a node's (the agent's uplink). A call that is
not idempotent is not repeated: its caller gets WampCalleeLost."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from edgecloud_contracts import uris
from edgecloud_servicekit.wamp import Procedure, WampCalleeLost, WampLink
from tests.support.beats import heartbeat
from tests.support.stack import Stack
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


class Replica:
    """A callee of the shared procedure; ``dies`` makes it drop its connection to the router
    (as a killed process does) while a call is in its hands."""

    def __init__(self, name: str, *, dies: bool) -> None:
        self.name = name
        self.dies = dies
        self.calls = 0
        self.link: WampLink | None = None

    async def answer(self, value: int) -> dict[str, Any]:
        self.calls += 1
        if self.dies:
            assert self.link is not None
            self.link._session._transport.abort()  # the router sees the callee vanish
            await asyncio.sleep(30)
        return {"value": value, "by": self.name}


@asynccontextmanager
async def replica(stack: Stack, uri: str, behaviour: Replica) -> AsyncIterator[WampLink]:
    link = WampLink(
        url=stack.router_url,
        realm="edgecloud",
        authid="orchestrator",
        ticket=stack.tickets["orchestrator"],
        procedures=[Procedure(uri, behaviour.answer)],
    )
    behaviour.link = link
    async with link:
        await link.wait_joined(15)
        yield link


@asynccontextmanager
async def caller(stack: Stack) -> AsyncIterator[WampLink]:
    link = WampLink(
        url=stack.router_url,
        realm="edgecloud",
        authid="gateway",
        ticket=stack.tickets["gateway"],
        call_timeout=10,
    )
    async with link:
        await link.wait_joined(15)
        yield link


async def test_a_call_whose_replica_dies_is_answered_by_the_other(stack: Stack) -> None:
    uri = f"edge.test.shared_{secrets.token_hex(4)}"
    dying, healthy = Replica("dying", dies=True), Replica("healthy", dies=False)
    async with (
        replica(stack, uri, dying),
        replica(stack, uri, healthy),
        caller(stack) as link,
    ):
        answers = [await link.call(uri, n, timeout=10) for n in range(3)]
    assert dying.calls >= 1  # round robin gave it a call, which it never answered
    assert answers == [{"value": n, "by": "healthy"} for n in range(3)]


async def test_a_call_that_is_not_idempotent_is_not_repeated(stack: Stack) -> None:
    uri = f"edge.test.shared_{secrets.token_hex(4)}"
    dying, healthy = Replica("dying", dies=True), Replica("healthy", dies=False)
    async with replica(stack, uri, dying), replica(stack, uri, healthy), caller(stack) as link:
        # The dying replica registered first: round robin gives it the first call.
        with pytest.raises(WampCalleeLost):
            await link.call(uri, 0, timeout=10, idempotent=False)
        assert await link.call(uri, 1, timeout=10, idempotent=False) == {
            "value": 1,
            "by": "healthy",
        }
    assert (dying.calls, healthy.calls) == (1, 1)


async def test_a_heartbeat_whose_registry_replica_dies_is_not_lost(stack: Stack, enrol) -> None:
    """A second, dying replica joins the real registry's shared heartbeat procedure; every
    heartbeat the node sends is still acknowledged (the uplink calls again) and written."""
    key = probe_key()
    dying = Replica("dying", dies=True)
    async with (
        replica(stack, uris.HEARTBEAT, dying),
        device_session(stack, key=key, token=await enrol()) as uplink,
    ):
        acks = [
            await uplink.call(uris.HEARTBEAT, heartbeat(key, seq=seq), timeout=5)
            for seq in range(1, 5)
        ]
    assert dying.calls >= 1
    assert all(ack["status"] == "online" for ack in acks)
