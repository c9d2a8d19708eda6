"""Collaboration level 0: helping two other nodes find each other (reference design 5.1).

A node too small to keep or run a container can still offer messaging. When the scheduler
finds no node near a container's source able to run it, it asks a peer near the source
to reach the nodes the cloud knows could (``find``): what the cloud cannot know is who
reaches whom right now, and this node tries from where it stands. If it reached one, it
lends its broker to the migration (``relay``): logins for the source and the target alone,
limited to the migration's topics, exactly as a target makes them on its own broker. The
two sides then talk through it, sealed with the migration's key, which this node never
sees: it carries their messages and can read or forge none of them.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from edgecloud_contracts import errors, uris
from edgecloud_contracts.migrations import (
    MigrationFind,
    MigrationFound,
    MigrationRelay,
    MigrationRelayed,
    MigrationRelease,
)

from ..broker.identities import BrokerError, BrokerIdentities
from ..uplink.errors import CommandRejected
from .migration import _one_component as check_migration_id
from .migration import _parse as parse_call
from .neighbours import round_trip

logger = logging.getLogger(__name__)

FIND_TIMEOUT_S = 2.0
"""How long one candidate's broker has to answer (they are probed side by side)."""
RELAY_TTL_S = 1800.0
"""A relayed migration's logins go by themselves this long after they were made, should
the scheduler never say it ended (a move's whole transfer is bounded well below)."""


class PeerRelay:
    def __init__(
        self, *, me: str, identities: BrokerIdentities | None, ttl_s: float = RELAY_TTL_S
    ) -> None:
        self._me = me
        self._identities = identities
        self._ttl_s = ttl_s
        self._expiring: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def procedures(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        return {
            uris.device_procedure(self._me, uris.MIGRATION_FIND): self.find,
            uris.device_procedure(self._me, uris.MIGRATION_RELAY): self.relay,
            uris.device_procedure(self._me, uris.MIGRATION_RELEASE): self.release,
        }

    async def find(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        asked = parse_call(MigrationFind, args, kwargs)
        keys = [k for k in asked.candidates if k != self._me]
        measured = await asyncio.gather(
            *(round_trip(asked.candidates[k], FIND_TIMEOUT_S) for k in keys)
        )
        reached = {k: rtt for k, rtt in zip(keys, measured, strict=True) if rtt is not None}
        logger.info(
            "a place for %s: reached %d of %d candidates",
            asked.container_id,
            len(reached),
            len(keys),
        )
        return MigrationFound(reached=reached).model_dump(mode="json")

    async def relay(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        order = _parse(MigrationRelay, args, kwargs)
        if self._me in (order.source, order.target) or order.source == order.target:
            raise CommandRejected(errors.INVALID_ARGUMENT, "a relay between two other nodes")
        if self._identities is None:
            return MigrationRelayed().model_dump(mode="json")
        if order.migration in self._expiring:
            raise CommandRejected(errors.FAILED_PRECONDITION, "this migration is relayed already")
        try:
            target_login, source_login = await self._identities.migration(
                order.migration, me=order.target, peer=order.source
            )
        except BrokerError as err:
            raise CommandRejected(errors.UNAVAILABLE, f"the local broker: {err}") from err
        loop = asyncio.get_running_loop()
        self._expiring[order.migration] = loop.call_later(
            self._ttl_s, self._expire, order.migration
        )
        logger.info("relaying migration %s: %s -> %s", order.migration, order.source, order.target)
        relayed = MigrationRelayed(source_login=source_login, target_login=target_login)
        return relayed.model_dump(mode="json")

    async def release(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        order = _parse(MigrationRelease, args, kwargs)
        handle = self._expiring.pop(order.migration, None)
        if handle is not None:
            handle.cancel()
            await self._forget(order.migration)
        return {"released": handle is not None}

    def _expire(self, migration: str) -> None:
        self._expiring.pop(migration, None)
        task = asyncio.create_task(self._forget(migration), name=f"relay-expiry-{migration}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget(self, migration: str) -> None:
        if self._identities is None:
            return
        try:
            await self._identities.forget("peer", migration)
        except BrokerError as err:
            logger.warning("logins of relayed migration %s not removed: %s", migration, err)

    async def close(self) -> None:
        for migration, handle in list(self._expiring.items()):
            handle.cancel()
            await self._forget(migration)
        self._expiring.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _parse(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    parsed = parse_call(model, args, kwargs)
    check_migration_id(parsed.migration)
    return parsed
