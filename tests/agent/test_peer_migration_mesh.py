"""A migration whose channel runs over the target's second address (its mesh): the image
the target lacks is not sent; the target is told to pull it instead. Same machinery as
test_peer_migration.py: this machine's Docker engine and node broker, the target's side
scripted over a real PeerChannel."""

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from edgecloud_agent.peers.channel import PeerChannel
from edgecloud_agent.peers.migration import migration_key, topic_of
from tests.support.brokers import NodeBroker

from .test_peer_migration import (
    SOURCE,
    TARGET,
    Node,
    new_key,
    order_for,
    running_container,
    source,
)

__all__ = ["source"]

DEAD_WAN = "mqtt://127.0.0.1:1"
"""The target's first address, where nothing answers: its WAN, out of the source's reach."""
ANSWERS = {
    "resource_request": ("level", {"level": 2, "has_image": False}),
    "configuration": ("configuration_ok", {}),
    "activate": ("failed", {"code": "test_over", "message": "seen enough"}),
}


async def test_over_the_mesh_the_image_stays_and_the_target_is_told_to_pull(
    source: Node, node_broker: NodeBroker, names: Callable[[], str]
) -> None:
    spec = await running_container(source, names)
    migration = f"m-{secrets.token_hex(6)}"
    assert source.node.identities is not None
    for_target, for_source = await source.node.identities.migration(
        migration, me=TARGET, peer=SOURCE
    )
    key = new_key()
    heard: list[tuple[str, dict[str, Any]]] = []
    peer = PeerChannel(
        me=TARGET, key=migration_key(key), broker_url=node_broker.url, login=for_target
    )
    await peer.connect(SOURCE, topic_of(migration))

    async def converse() -> None:
        while True:
            message = await peer.get_message(SOURCE, timeout=20)
            heard.append((message.kind, message.body))
            if (reply := ANSWERS.get(message.kind)) is not None:
                await peer.send(*reply)

    conversing = asyncio.create_task(converse())
    order = order_for(spec, migration, node_broker, for_source, key).model_copy(
        update={"target_urls": [DEAD_WAN, node_broker.url]}
    )
    try:
        outcome = await source.migrations.start(order.model_dump(mode="json"))
    finally:
        conversing.cancel()
        await asyncio.gather(conversing, return_exceptions=True)
        await peer.disconnect(end_session=True)

    assert outcome["error_code"] == "test_over", outcome
    [dependencies] = [body for kind, body in heard if kind == "dependencies"]
    assert dependencies == {"image": False, "context": False, "pull": True}
    files = [body["n"] for kind, body in heard if kind == "file.head"]
    assert files == ["app"]
