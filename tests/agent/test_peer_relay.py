"""Collaboration level 0 on a node broker as broker-setup makes it: the relay reaches the
nodes it is asked about from where it stands, lends its broker to a migration between two
others (their messages pass, sealed with a key it never sees), refuses to relay for itself
or under a bad id, and forgets the logins when told or when their time is up."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgecloud_agent.broker.identities import BrokerIdentities
from edgecloud_agent.peers.channel import PeerChannel, PeerError
from edgecloud_agent.peers.migration import migration_key, topic_of
from edgecloud_agent.peers.relaying import PeerRelay
from edgecloud_agent.uplink.errors import CommandRejected
from edgecloud_contracts import errors
from edgecloud_contracts.migrations import MigrationRelayed
from tests.support.brokers import NodeBroker
from tests.support.processes import free_port

from .conftest import isolation

RELAY, SOURCE, TARGET = "node_relay", "node_source", "node_target"


@pytest.fixture
async def identities(runtime, node_broker: NodeBroker, tmp_path: Path) -> AsyncIterator:
    node = await isolation(runtime, tmp_path / "relay", node_broker)
    assert node.identities is not None
    try:
        yield node.identities
    finally:
        node.identities.close()
        node.images.close()


async def test_find_answers_which_candidates_it_reached(node_broker: NodeBroker) -> None:
    relay = PeerRelay(me=RELAY, identities=None)
    closed = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    found = await relay.find(
        {
            "container_id": "c-1",
            "candidates": {"n_up": node_broker.url, "n_down": closed, RELAY: node_broker.url},
        }
    )
    assert set(found["reached"]) == {"n_up"}
    assert found["reached"]["n_up"] >= 0


async def channel(me: str, peer: str, migration: str, key: str, url: str, login) -> PeerChannel:
    side = PeerChannel(me=me, key=migration_key(key), broker_url=url, login=login)
    await side.connect(peer, topic_of(migration))
    return side


async def test_two_nodes_talk_through_the_relay_and_only_until_it_is_released(
    identities: BrokerIdentities, node_broker: NodeBroker
) -> None:
    relay = PeerRelay(me=RELAY, identities=identities)
    migration, key = f"m-{secrets.token_hex(6)}", secrets.token_urlsafe(32)
    relayed = MigrationRelayed.model_validate(
        await relay.relay({"migration": migration, "source": SOURCE, "target": TARGET})
    )
    assert relayed.source_login is not None
    assert relayed.target_login is not None
    url = node_broker.url
    target = await channel(TARGET, SOURCE, migration, key, url, relayed.target_login)
    source = await channel(SOURCE, TARGET, migration, key, url, relayed.source_login)
    await source.send("resource_request", {"container_id": "c-1"})
    heard = await target.get_message(SOURCE, timeout=10)
    assert (heard.kind, heard.body) == ("resource_request", {"container_id": "c-1"})
    await target.disconnect(end_session=True)
    await source.disconnect(end_session=True)

    # The same relay twice is refused; once released, the logins are gone.
    with pytest.raises(CommandRejected):
        await relay.relay({"migration": migration, "source": SOURCE, "target": TARGET})
    assert await relay.release({"migration": migration}) == {"released": True}
    with pytest.raises(PeerError):
        await channel(SOURCE, TARGET, migration, key, url, relayed.source_login)
    assert await relay.release({"migration": migration}) == {"released": False}


async def test_unreleased_logins_expire(
    identities: BrokerIdentities, node_broker: NodeBroker
) -> None:
    relay = PeerRelay(me=RELAY, identities=identities, ttl_s=0.2)
    migration, key = f"m-{secrets.token_hex(6)}", secrets.token_urlsafe(32)
    relayed = MigrationRelayed.model_validate(
        await relay.relay({"migration": migration, "source": SOURCE, "target": TARGET})
    )
    await asyncio.sleep(1.0)
    with pytest.raises(PeerError):
        await channel(SOURCE, TARGET, migration, key, node_broker.url, relayed.source_login)
    await relay.close()


@pytest.mark.parametrize(
    "order",
    [
        {"migration": "m-1", "source": RELAY, "target": TARGET},  # itself
        {"migration": "m-1", "source": SOURCE, "target": SOURCE},  # one node
        {"migration": "../x", "source": SOURCE, "target": TARGET},  # off its topic
        {"migration": "m-1", "source": "Not A Key", "target": TARGET},
        {"migration": "m-1", "source": SOURCE},
    ],
    ids=["itself", "one_node", "bad_id", "bad_key", "no_target"],
)
async def test_a_relay_it_should_not_make_is_refused(order: dict) -> None:
    relay = PeerRelay(me=RELAY, identities=None)
    with pytest.raises(CommandRejected) as refused:
        await relay.relay(order)
    assert refused.value.uri == errors.INVALID_ARGUMENT
    assert relay._expiring == {}
