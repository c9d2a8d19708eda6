"""A call made in the instant between the socket closing and the session hearing of it.

autobahn then raises its own ``Disconnected`` at once (not ``TransportLost``); the uplink
must report it as ``NotConnected`` like any lost link, or the heartbeat and report loops,
which retry uplink errors, would die with it. Seen with a few hundred simulated agents
whose links dropped together (tests/support/fleet.py).
"""

from typing import Any

import pytest
from autobahn.exception import Disconnected

from edgecloud_agent.uplink.errors import NotConnected
from edgecloud_agent.uplink.wamp import Backoff, Login, Uplink


class ClosedSocketSession:
    def call(self, *args: Any, **kwargs: Any) -> Any:
        raise Disconnected("Attempt to send on a closed protocol")


async def test_a_call_on_a_socket_just_closed_is_not_connected() -> None:
    uplink = Uplink(
        url="ws://127.0.0.1:9/ws",
        realm="edgecloud",
        login=Login("node_020000000001", bytes(32), None),
        backoff=Backoff(0.1, 0.2),
    )
    uplink._session = ClosedSocketSession()  # type: ignore[assignment]  # joined, then closed
    with pytest.raises(NotConnected):
        await uplink.call("edge.registry.heartbeat", {}, timeout=1)
