"""Posting raised and cleared alerts to their rules' webhooks.

Deliveries never hold up the evaluator: it hands them over and goes on. Each rule has a
lane, so a rule's clear is posted after its raise; lanes run side by side as tasks of
one task group, each post with a short timeout and a few retries with backoff. How a
delivery went is written on the alert.

Webhook URLs are the tenants' own: unless allowed (development), a post never goes to a
loopback, private or otherwise non-public address, also when a name resolves to one.
"""

import asyncio
import ipaddress
import logging
import socket
from collections import deque
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from edgecloud_contracts.alerts import DeliveryState
from edgecloud_servicekit.db import transaction, utcnow

from . import service
from .schemas import Notice

logger = logging.getLogger(__name__)

QUEUE_MAX = 10_000
USER_AGENT = "edgecloud-alerts/1"
# A receiver's 4xx says the post itself is wrong: retrying would not help, except these.
_RETRIED_CLIENT_ERRORS = frozenset({408, 425, 429})


class NotPublic(Exception):
    """The webhook's address is not a public one."""


def _is_public(address: str) -> bool:
    return ipaddress.ip_address(address).is_global


class PublicOnlyResolver(AbstractResolver):
    """Resolves names to their public addresses only."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        public = [result for result in found if _is_public(result["host"])]
        if not public:
            raise OSError(socket.EAI_NONAME, f"{host} has no public address")
        return public

    async def close(self) -> None:
        await self._resolver.close()


@dataclass(frozen=True, slots=True)
class _Outcome:
    state: DeliveryState
    attempts: int
    error: str | None


class WebhookSender:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        timeout_s: float,
        attempts: int,
        backoff_s: float,
        private_targets: bool,
    ) -> None:
        self._sessions = sessions
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 3.0))
        self._attempts = max(1, attempts)
        self._backoff = backoff_s
        self._private_targets = private_targets
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=QUEUE_MAX)
        self._lanes: dict[str, deque[Notice]] = {}

    def submit(self, notice: Notice) -> None:
        """Queue the notice's post; never waits."""
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            logger.warning("webhook queue full: alert %s not posted", notice.event.id)

    async def run(self) -> None:
        """Post queued notices for the life of the service."""
        resolver: AbstractResolver = (
            DefaultResolver() if self._private_targets else PublicOnlyResolver()
        )
        try:
            async with (
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(resolver=resolver, limit=100),
                    timeout=self._timeout,
                    headers={"User-Agent": USER_AGENT},
                ) as client,
                asyncio.TaskGroup() as lanes,
            ):
                while True:
                    notice = await self._queue.get()
                    rule = notice.event.rule
                    if rule in self._lanes:
                        self._lanes[rule].append(notice)
                        continue
                    self._lanes[rule] = deque([notice])
                    lanes.create_task(self._drain(client, rule), name=f"alert-webhook-{rule}")
        finally:
            await resolver.close()

    async def _drain(self, client: aiohttp.ClientSession, rule: str) -> None:
        lane = self._lanes[rule]
        try:
            while lane:
                notice = lane[0]
                try:
                    outcome = await self._post(client, notice)
                except Exception:  # a bug here must not end every other lane
                    logger.exception("posting the webhook of alert %s failed", notice.event.id)
                    outcome = _Outcome(DeliveryState.FAILED, 0, "internal error")
                await self._record(notice, outcome)
                lane.popleft()
        finally:
            del self._lanes[rule]

    async def _post(self, client: aiohttp.ClientSession, notice: Notice) -> _Outcome:
        assert notice.webhook is not None
        body = notice.event.model_dump(mode="json")
        error = "not attempted"
        attempt = 0
        while attempt < self._attempts:
            attempt += 1
            try:
                self._check_address(notice.webhook)
                async with client.post(notice.webhook, json=body, allow_redirects=False) as answer:
                    if 200 <= answer.status < 300:
                        return _Outcome(DeliveryState.DELIVERED, attempt, None)
                    error = f"the webhook answered HTTP {answer.status}"
                    if 300 <= answer.status < 500 and answer.status not in _RETRIED_CLIENT_ERRORS:
                        break
            except NotPublic as err:
                error = str(err)
                break
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        logger.warning("webhook of alert %s failed: %s", notice.event.id, error)
        return _Outcome(DeliveryState.FAILED, attempt, error)

    def _check_address(self, url: str) -> None:
        if self._private_targets:
            return
        host = URL(url).host or ""
        try:
            public = _is_public(host)
        except ValueError:
            return  # a name: the resolver keeps only its public addresses
        if not public:
            raise NotPublic(f"{host} is not a public address")

    async def _record(self, notice: Notice, outcome: _Outcome) -> None:
        try:
            async with transaction(self._sessions) as session:
                await service.record_delivery(
                    session=session,
                    alert_id=notice.event.id,
                    transition=notice.event.transition,
                    state=outcome.state,
                    attempts=outcome.attempts,
                    error=outcome.error,
                    at=utcnow(),
                )
        except Exception as err:  # the post happened either way; only its record is lost
            logger.warning("recording the webhook of alert %s failed: %s", notice.event.id, err)
