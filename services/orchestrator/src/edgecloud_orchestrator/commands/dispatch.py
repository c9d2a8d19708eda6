"""Delivering commands to nodes: at least once, in order per node.

A command is sent as a WAMP call to ``edge.device.<key>.container.<action>``. When the
node is not connected it waits in the outbox; when the node comes back (its status
event) or on the next sweep, the node's waiting commands are sent again, oldest first.
A call that timed out is simply sent again later: the node remembers the commands it
applied and answers a repeat with the first result, so nothing is applied twice.
"""

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import uris
from edgecloud_contracts.containers import (
    Action,
    Command,
    CommandResult,
    CommandState,
    LogsAnswer,
    LogsRequest,
)
from edgecloud_contracts.correlation import bound_request_id
from edgecloud_contracts.shell import ExecOrder, ExecRequest, ExecResult
from edgecloud_servicekit.db import commit_without_waiting_for_disk, transaction, utcnow
from edgecloud_servicekit.wamp import WampCallError, WampLink, WampTimeout, WampUnavailable

from ..containers import service as containers_service
from ..containers.models import Container
from ..events import EventPublisher
from . import service
from .grants import with_fresh_grants
from .models import CommandRow

logger = logging.getLogger(__name__)

# The node is not connected (its procedures are not registered): wait for it.
_NOT_CONNECTED = ("wamp.error.no_such_procedure", "wamp.error.no_such_registration")


class Dispatcher:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        events: EventPublisher,
        command_timeout_s: float,
        create_timeout_s: float,
        sweep_interval_s: float,
        secret: str,
        grant_ttl_s: float = 3600.0,
        on_failure: Callable[[CommandRow], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._events = events
        self._command_timeout = command_timeout_s
        self._create_timeout = create_timeout_s
        self._secret = secret
        self._grant_ttl_s = grant_ttl_s
        # Cleans up after a command that failed or expired (a deployment, an upload slot).
        self._on_failure = on_failure
        self._sweep_interval = sweep_interval_s
        self._device_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._woken: asyncio.Queue[str] = asyncio.Queue()
        # Deliveries a request stopped waiting for; finished here, cancelled on shutdown.
        self._in_flight: set[asyncio.Task[CommandRow]] = set()

    def timeout_for(self, action: str) -> float:
        # A create may pull or load an image; files are copied and uploaded in the call.
        if action in (Action.CREATE, Action.FILES):
            return self._create_timeout
        return self._command_timeout

    async def deliver(self, command_id: str, *, wait_s: float) -> CommandRow:
        """Send one command now and wait up to ``wait_s`` for the node's answer.

        Past that the command is still delivered and its result recorded, but the caller
        gets it as it stands (sent): a slow image pull must not hold an HTTP request.
        """
        row = await self._reload(command_id)
        task = asyncio.create_task(
            self._deliver_in_order(row, look_first=False), name=f"deliver-{command_id}"
        )
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        if task in done:
            return task.result()
        return await self._reload(command_id)

    async def _deliver_in_order(self, row: CommandRow, *, look_first: bool) -> CommandRow:
        async with self._device_locks[row.device_key]:
            return await self._send(row, look_first=look_first)

    async def close(self) -> None:
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _send(self, row: CommandRow, *, look_first: bool = True) -> CommandRow:
        """Send one command. ``look_first`` asks the router whether the node is connected
        before marking anything: the sweep does, so a node that is away costs no failed
        call and no writes per sweep; a user's request does not (the node is usually
        there, and a call to an absent node just puts the command back in the queue)."""
        link = self._events.link
        procedure = uris.device_procedure(row.device_key, uris.container_operation(row.action))
        try:
            if link is None:
                raise WampUnavailable("no WAMP link")
            if look_first and not await link.is_registered(procedure):
                return row
        except (WampUnavailable, WampTimeout, WampCallError):
            return row
        async with transaction(self._sessions) as session:
            # Losing this mark in a crash only means the command is sent again.
            await commit_without_waiting_for_disk(session)
            claimed = await service.mark_sent(
                session=session, command_id=row.id, attempts=row.attempts
            )
        if not claimed:  # another replica (or request) sends it: replicas never send twice
            return await self._reload(row.id)
        try:
            payload = with_fresh_grants(
                row.payload,
                tenant_id=row.tenant_id,
                device_key=row.device_key,
                secret=self._secret,
                ttl_s=self._grant_ttl_s,
            )
            # The id of the action that made the command, also when the loop sends it later.
            with bound_request_id(row.correlation_id):
                answer = await link.call(procedure, payload, timeout=self.timeout_for(row.action))
        except WampCallError as err:
            if err.error in _NOT_CONNECTED:
                # The router had no such node: nothing was delivered, so no attempt counts.
                return await self._requeue(row, delivered=False)
            # The node refused the command itself (invalid for it): that is its answer.
            result = CommandResult(
                command_id=row.id,
                ok=False,
                error_code=err.error.rsplit(".", 1)[-1],
                error=" ".join(str(a) for a in err.args_) or err.error,
            )
        except WampUnavailable:
            return await self._requeue(row)
        except WampTimeout:
            logger.info(
                "command %s to %s got no answer yet; it will be sent again", row.id, row.device_key
            )
            return await self._reload(row.id)
        else:
            try:
                result = CommandResult.model_validate(answer)
            except ValueError as err:
                result = CommandResult(
                    command_id=row.id, ok=False, error_code="bad_answer", error=str(err)[:400]
                )
        return await self.apply(row.id, result)

    async def _requeue(self, row: CommandRow, *, delivered: bool = True) -> CommandRow:
        async with transaction(self._sessions) as session:
            await service.back_to_queue(session=session, command_id=row.id, delivered=delivered)
        return await self._reload(row.id)

    async def _reload(self, command_id: str) -> CommandRow:
        async with self._sessions() as session:
            row = await session.scalar(service.select_by_id(command_id))
        assert row is not None
        return row

    async def apply(self, command_id: str, result: CommandResult) -> CommandRow:
        """Record a node's answer and what it means for the container; announce both."""
        async with transaction(self._sessions) as session:
            # If this is lost in a crash the command stays "sent" and is sent again; the
            # node answers a repeat with the same result, so nothing is applied twice.
            await commit_without_waiting_for_disk(session)
            row = await service.finish(session=session, command_id=command_id, result=result)
            container = None
            if row is not None:
                container = await containers_service.apply_result(
                    session=session, command=row, result=result
                )
        if row is None:
            return await self._reload(command_id)
        await self._events.command(row)
        if container is not None:
            await self._events.container(container)
        if not result.ok:
            await self._failed(row)
        return row

    async def _failed(self, row: CommandRow) -> None:
        if self._on_failure is None:
            return
        try:
            await self._on_failure(row)
        except Exception as err:  # cleanup is retried by nobody: say so loudly
            logger.error("cleaning up after failed command %s: %s", row.id, err)

    async def inspect(
        self, *, device_key: str, container_id: str, docker_name: str
    ) -> CommandResult:
        """Ask the node about a container now. Not stored: it changes nothing, and a node
        that cannot answer raises :class:`WampError` to the caller."""
        command = Command(
            id=str(uuid.uuid4()),
            action=Action.INSPECT,
            container_id=container_id,
            docker_name=docker_name,
        )
        link = self._link()
        procedure = uris.device_procedure(device_key, uris.container_operation(Action.INSPECT))
        answer = await link.call(
            procedure, command.model_dump(mode="json"), timeout=self.timeout_for(Action.INSPECT)
        )
        return CommandResult.model_validate(answer)

    async def logs(
        self,
        container: Container,
        *,
        tail: int,
        since: datetime | None = None,
        device_key: str | None = None,
    ) -> LogsAnswer:
        """Ask the node for a container's log lines now (never queued); ``device_key``: of
        the old copy kept on that node instead."""
        link = self._link()
        request = LogsRequest(
            container_id=container.id,
            docker_name=container.docker_name,
            tail=tail,
            since=since,
        )
        procedure = uris.device_procedure(device_key or container.device_key, uris.CONTAINER_LOGS)
        answer = await link.call(
            procedure, request.model_dump(mode="json"), timeout=self._command_timeout
        )
        return LogsAnswer.model_validate(answer)

    def _link(self) -> WampLink:
        link = self._events.link
        if link is None:
            raise WampUnavailable("no WAMP link")
        return link

    async def exec(self, container: Container, request: ExecRequest) -> ExecResult:
        """Run a command inside the container now (never queued: it is not idempotent)."""
        link = self._link()
        order = ExecOrder(
            container_id=container.id,
            docker_name=container.docker_name,
            cmd=request.cmd,
            timeout_s=request.timeout_s,
        )
        procedure = uris.device_procedure(container.device_key, uris.CONTAINER_EXEC)
        answer = await link.call(
            procedure,
            order.model_dump(mode="json"),
            timeout=request.timeout_s + self._command_timeout,
            idempotent=False,
        )
        return ExecResult.model_validate(answer)

    def wake(self, device_key: str) -> None:
        """A node came back: send what waits for it (soon, from the dispatcher's loop)."""
        self._woken.put_nowait(device_key)

    async def on_device_status(self, event: dict[str, Any]) -> None:
        if event.get("status") in ("online", "degraded"):
            self.wake(str(event.get("key")))

    async def deliver_waiting(self, device_key: str) -> None:
        """Send a node's waiting commands in order; stop at the first it cannot take now."""
        async with self._device_locks[device_key]:
            async with self._sessions() as session:
                waiting = list(await service.pending_for(session=session, device_key=device_key))
            now = utcnow()
            for row in waiting:
                in_flight = (
                    row.state == CommandState.SENT.value
                    and row.sent_at is not None
                    and now - row.sent_at < timedelta(seconds=self.timeout_for(row.action) + 5)
                )
                if in_flight:
                    return
                after = await self._send(row)
                if after.state in service.PENDING:
                    return

    async def run(self) -> None:
        """Expire overdue commands, and send waiting ones when nodes come back."""
        while True:
            try:
                device_key = await asyncio.wait_for(self._woken.get(), self._sweep_interval)
                devices = [device_key]
            except TimeoutError:
                devices = await self._sweep()
            for device in dict.fromkeys(devices):
                try:
                    await self.deliver_waiting(device)
                except Exception as err:  # one node's trouble must not stop the others
                    logger.warning("delivering commands to %s failed: %s", device, err)

    async def _sweep(self) -> list[str]:
        try:
            async with transaction(self._sessions) as session:
                expired = await service.expire_overdue(session=session, now=utcnow())
                containers = [
                    await containers_service.command_expired(session=session, command=row)
                    for row in expired
                ]
            for row in expired:
                await self._events.command(row)
                await self._failed(row)
            for container in containers:
                if container is not None:
                    await self._events.container(container)
            async with self._sessions() as session:
                return await service.devices_with_pending(session=session)
        except Exception as err:  # the database may be down; try again next round
            logger.warning("command sweep failed: %s", err)
            return []
