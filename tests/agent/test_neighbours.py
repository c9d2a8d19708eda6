"""The node's round trips to its peers' brokers (peers/neighbours.py), on 127.0.0.1: a peer
whose first address does not answer (its WAN, or this node's, gone) is measured over the
next (its mesh address), so it stays near enough for a move over the mesh."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from edgecloud_agent.peers.neighbours import NeighbourProber

DEAD = "mqtt://127.0.0.1:1"


@pytest.fixture
async def live() -> AsyncIterator[str]:
    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with server:
        yield f"mqtt://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_a_peer_is_measured_over_its_first_address_that_answers(live: str) -> None:
    prober = NeighbourProber(timeout_s=1.0)
    prober.update({"mesh_peer": DEAD, "gone_peer": DEAD}, {"mesh_peer": [DEAD, live]})
    await prober.measure()
    assert set(prober.rtts()) == {"mesh_peer"}
