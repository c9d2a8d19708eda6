"""The relay's beacons on 127.0.0.1: a neighbour it relays for gets them and notices when
they stop; anyone else asking gets nothing (the relay cannot be made to send elsewhere)."""

import asyncio
import socket

import pytest

from edgecloud_agent.uplink import beacon
from edgecloud_agent.uplink.beacon import Beacons

INTERVAL_S = 0.2
WAIT_S = 10.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_neighbour_hears_beacons_until_the_relay_stops() -> None:
    port = free_udp_port()
    relayed = {"127.0.0.1"}
    beacons = Beacons(interval_s=INTERVAL_S, relaying=relayed.__contains__, max_targets=8)
    await beacons.start("127.0.0.1", port)
    watching = asyncio.create_task(beacon.watch(("127.0.0.1", port), silence_s=5 * INTERVAL_S))
    try:
        await asyncio.sleep(20 * INTERVAL_S)
        assert not watching.done()  # beacons keep coming
        assert beacons.sent >= 10
    finally:
        await beacons.close()
    # The relay gone: silence, noticed.
    async with asyncio.timeout(WAIT_S):
        await watching


async def test_a_host_the_relay_does_not_relay_for_gets_nothing() -> None:
    port = free_udp_port()
    beacons = Beacons(interval_s=INTERVAL_S, relaying=lambda host: False, max_targets=8)
    await beacons.start("127.0.0.1", port)
    try:
        async with asyncio.timeout(WAIT_S):
            await beacon.watch(("127.0.0.1", port), silence_s=5 * INTERVAL_S)
        assert beacons.sent == 0
    finally:
        await beacons.close()


def test_beacons_need_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive interval"):
        Beacons(interval_s=0, relaying=lambda host: True, max_targets=1)
