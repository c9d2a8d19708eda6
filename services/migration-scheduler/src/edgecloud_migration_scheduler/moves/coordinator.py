"""Running a migration: choose the peer, tell both agents, follow their steps, move the
container's record, and say how it ended.

The agents do the moving themselves, peer to peer over MQTT (edgecloud_agent.peers); the
scheduler decides, authorises (a key of this migration alone, which seals every message the
two nodes exchange) and keeps the record. The target is told what to create from the
cloud's record of the container, never from the source: a compromised source can move only
the container the cloud has, with its limits, subscriptions and image.
The source's copy runs until the target's is started and the record points to the target:
the orchestrator moves the record when the source reports the target's activation, and only
then does the source stop its copy. So a failure before that point is a rollback, and the
container never stopped serving.
"""

import asyncio
import logging
import secrets
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import ContainerRecord, ContainerView
from edgecloud_contracts.devices import DeviceView, HostPort, PublishedPort, port_refusal
from edgecloud_contracts.heartbeat import DeviceStatus
from edgecloud_contracts.migrations import (
    MIGRATION_DONE,
    LostWindow,
    MigrationEvent,
    MigrationExpectation,
    MigrationFind,
    MigrationFound,
    MigrationOrder,
    MigrationOutcome,
    MigrationReady,
    MigrationReason,
    MigrationRelay,
    MigrationRelayed,
    MigrationRelease,
    MigrationState,
    MigrationStep,
    NodeMigrationRequest,
    StepReport,
)
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import MEMBER, OPERATOR, Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import Problem, RemoteProblem
from edgecloud_servicekit.wamp import WampCallError, WampError, WampLink

from ..placement.planner import Candidate, Demand, Plan, Policy, plan
from . import service
from .exceptions import (
    DeviceNotEligible,
    HoldsHardware,
    MigrationInProgress,
    NoSuitablePeer,
    PortsRefused,
)
from .models import Migration

logger = logging.getLogger(__name__)

SCHEDULER = "migration-scheduler"


class ReportRefused(Exception):
    def __init__(self, uri: str, message: str) -> None:
        super().__init__(message)
        self.uri = uri


class RequestRefused(ReportRefused):
    """A node's request to move containers that it may not make (now)."""


NODE_MOVES_WINDOW = timedelta(minutes=1)
HAND_ON_RETRY_S = 30.0
"""A hand-on that failed is tried again this much later (the keeper keeps the package)."""
PACKAGE_GONE = frozenset({"container_not_here", "no_image"})
"""A keeper's answers that leave nothing to hand on again: no package, or one holding
neither the image nor its context (what a compromised source could have sent it)."""


class Coordinator:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        registry: ServiceClient,
        orchestrator: ServiceClient,
        policy: Policy,
        expect_timeout_s: float,
        move_timeout_s: float,
        node_moves_per_minute: int = 20,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._orchestrator = orchestrator
        self._policy = policy
        # A lost node's neighbours stopped measuring it: distance cannot rule them out.
        self._unmeasured_policy = replace(policy, unknown_rtt_ms=policy.max_rtt_ms)
        self._expect_timeout_s = expect_timeout_s
        self._move_timeout_s = move_timeout_s
        self._node_moves_per_minute = node_moves_per_minute
        self.link: WampLink | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._hand_on_after: dict[str, float] = {}

    async def close(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    # Starting one.

    async def start(
        self,
        *,
        caller: Identity,
        container_id: str,
        device: str | None,
        reason: MigrationReason,
    ) -> str:
        """Plan the move of ``container_id`` (to ``device``, or the best peer) and set it
        going; the migration's id. Raises a problem when it cannot even start."""
        selecting = time.perf_counter()
        answer = await self._orchestrator.request(
            "GET", f"/v1/containers/{container_id}", identity=caller
        )
        container = ContainerView.model_validate(answer.json())
        if container.interfaces:
            raise HoldsHardware(container_id)
        async with self._sessions() as session:
            if await _unfinished_for(session, container_id) is not None:
                raise MigrationInProgress(container_id)
        everything = await self._all_devices()
        devices = await self._usable_by(caller, everything)
        source = everything.get(container.device)
        source_peer_url = source.peer_url if source is not None else ""
        if device is not None and (device not in devices or device == container.device):
            raise DeviceNotEligible(device, "not a device of this tenant other than the source")
        published = await self._published()
        ports = _ports_of(container.id, published)
        taken = _taken(published)
        reserved = await self._reserved()
        if device is not None:
            refused = port_refusal(devices[device].policy, ports, taken.get(device, set()))
            if refused is not None:
                raise PortsRefused(device, *refused)
        demand = Demand(
            container_id=container.id,
            tenant_id=caller.tenant_id,
            source=container.device,
            arch=source.arch if source is not None else None,
            # A CPU limit is a cap, not a reservation (the container may use none of it), so
            # only memory, which Docker holds the container to, has to fit.
            cpus=0.0,
            memory=container.limits.memory,
            disk=0,
            ports=ports,
        )
        candidates = [
            _candidate(d, tenant_id=caller.tenant_id, source=source, taken=taken, reserved=reserved)
            for d in devices.values()
            if device is None or d.key in (device, container.device)
        ]
        chosen = plan([demand], candidates, self._policy)
        level, via = 2, None
        if not chosen.choices and device is None:
            chosen, level, via = await self._fallback(
                demand=demand,
                container=container,
                candidates=candidates,
                source=source,
                everything=everything,
                unplaced=chosen,
            )
        choice = chosen.choices[0] if chosen.choices else None
        migration_id = await self._record_plan(
            tenant_id=caller.tenant_id,
            container_id=container.id,
            source=container.device,
            reason=reason,
            chosen=chosen,
            extra={"source_peer_url": source_peer_url},
            selection_ms=_since(selecting),
            level=level,
            via=via,
        )
        if choice is None:
            if device is not None:
                raise DeviceNotEligible(device, _why_not(chosen, container.id))
            raise NoSuitablePeer(migration_id, _why_not(chosen, container.id))
        relay = everything[via] if via is not None else None
        target = devices[choice.target]
        self._launch(migration_id, container, target, source_peer_url, level=level, via=relay)
        return migration_id

    def _launch(
        self,
        migration_id: str,
        container: ContainerView,
        target: DeviceView,
        source_peer_url: str,
        **how: Any,
    ) -> None:
        """Run the move in the background (``how``: :meth:`_drive`'s level and relay)."""
        task = asyncio.create_task(
            self._drive(migration_id, container, target, source_peer_url=source_peer_url, **how),
            name=f"migration-{migration_id}",
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _fallback(
        self,
        *,
        demand: Demand,
        container: ContainerView,
        candidates: list[Candidate],
        source: DeviceView | None,
        everything: dict[str, DeviceView],
        unplaced: Plan,
    ) -> tuple[Plan, int, str | None]:
        """No node near the source can run it. Level 0: a peer near the source may reach one
        the source cannot; level 1: a peer that can keep it holds it until one can run it.
        The plan chosen, its level, and the level-0 peer."""
        found = await self._through_a_peer(
            demand, container, candidates, source, everything, unplaced
        )
        if found is not None:
            chosen, via = found
            return chosen, 0, via
        kept = self._keeping(demand, container, candidates)
        if kept.choices:
            return kept, 1, None
        return unplaced, 2, None

    async def _through_a_peer(
        self,
        demand: Demand,
        container: ContainerView,
        candidates: list[Candidate],
        source: DeviceView | None,
        everything: dict[str, DeviceView],
        unplaced: Plan,
    ) -> tuple[Plan, str] | None:
        """Level 0. The nodes that could run it but that the source has never measured are
        named to the peers the source reaches, nearest first: each tries to reach them from
        where it stands (``migration.find``); the first that reaches one within the round
        trip allowed (source to peer plus peer to node) relays the move."""
        if source is None or self.link is None or not self.link.connected:
            return None
        unmeasured = {
            e.key
            for e in unplaced.excluded.get(container.id, [])
            if e.reason == "latency" and e.key not in source.neighbours
        }
        able = {k: everything[k].peer_url for k in sorted(unmeasured) if everything[k].peer_url}
        if not able:
            return None
        logger.info("level 0: looking for %s through the peers of %s", sorted(able), source.key)
        record = await self._record_of(container, "")
        if record.spec.subscriptions:
            return None  # its sensors publish on the source's broker, out of the target's reach
        near = sorted(
            (rtt, key)
            for key, rtt in source.neighbours.items()
            if key in everything
            and key != source.key
            and rtt <= self._policy.max_rtt_ms
            and everything[key].status is DeviceStatus.ONLINE
            and everything[key].peer_url
        )
        by_key = {c.key: c for c in candidates}
        for to_peer, peer in near:
            try:
                answer = await self.link.call(
                    uris.device_procedure(peer, uris.MIGRATION_FIND),
                    MigrationFind(container_id=container.id, candidates=able).model_dump(
                        mode="json"
                    ),
                    timeout=self._expect_timeout_s,
                )
                reached = MigrationFound.model_validate(answer).reached
            except (WampError, ValidationError) as err:
                logger.info("%s could not look for a peer: %s", peer, err)
                continue
            logger.info("level 0: %s reached %s of %s", peer, sorted(reached), sorted(able))
            # The distance is the way through the peer, as far as the peer measured it.
            through = [
                replace(by_key[key], rtt_ms={source.key: to_peer + rtt})
                for key, rtt in reached.items()
                if key in by_key and key in able
            ]
            chosen = plan([demand], through, self._policy)
            if chosen.choices:
                return chosen, peer
        return None

    def _keeping(
        self, demand: Demand, container: ContainerView, candidates: list[Candidate]
    ) -> Plan:
        """Level 1: the peer to keep the container's package. It runs nothing, so neither
        CPU, memory, ports nor architecture count: only the disk for its /app."""
        package = replace(
            demand, arch=None, cpus=0.0, memory=0, disk=container.limits.disk, ports=frozenset()
        )
        return plan([package], candidates, replace(self._policy, min_level=1))

    async def node_request(self, request: NodeMigrationRequest, *, device: str) -> dict[str, Any]:
        """A node's monitor wants its containers off it: all of them are placed together
        (exactly, when several move), then moved one after another."""
        operator = acting_for("")
        devices = await self._all_devices()
        source = devices.get(device)
        source_peer_url = source.peer_url if source is not None else ""
        on_node = await self._orchestrator.request(
            "GET", f"/v1/nodes/{device}/containers", identity=operator
        )
        wanted = set(request.containers) if request.containers is not None else None
        if wanted is not None and (strangers := wanted - {str(i["id"]) for i in on_node.json()}):
            # Only the node's own containers: never another node's, whatever it claims.
            raise RequestRefused(
                errors.NOT_AUTHORIZED,
                f"not containers of {device}: {', '.join(sorted(strangers))[:300]}",
            )
        moving: list[ContainerView] = []
        async with self._sessions() as session:
            asked = await service.asked_by_node(
                session=session, device=device, since=utcnow() - NODE_MOVES_WINDOW
            )
            for item in on_node.json():
                if wanted is not None and item["id"] not in wanted:
                    continue
                if await _unfinished_for(session, item["id"]) is not None:
                    continue  # a repeated request: that one is on its way already
                answer = await self._orchestrator.request(
                    "GET", f"/v1/containers/{item['id']}", identity=acting_for(item["tenant"])
                )
                view = ContainerView.model_validate(answer.json())
                if view.interfaces:
                    logger.info("%s stays on %s: it holds the node's hardware", view.id, device)
                    continue
                moving.append(view)
        # At most so many of the node's own moves a minute: the rest wait for its next ask.
        budget = max(0, self._node_moves_per_minute - asked)
        if moving and budget == 0:
            raise RequestRefused(
                errors.TOO_MANY_REQUESTS,
                f"{device} asked for {asked} moves in the last minute, at most "
                f"{self._node_moves_per_minute}: ask again later",
            )
        moving, deferred = moving[:budget], [c.id for c in moving[budget:]]
        tenants = {str(i["id"]): str(i["tenant"]) for i in on_node.json()}
        grants = await self._grants(devices, operator)
        published = await self._published()
        taken = _taken(published)
        reserved = await self._reserved()
        demands = [
            Demand(
                container_id=c.id,
                tenant_id=tenants[c.id],
                source=device,
                arch=source.arch if source is not None else None,
                cpus=0.0,
                memory=c.limits.memory,
                disk=0,
                ports=_ports_of(c.id, published),
            )
            for c in moving
        ]
        candidates = [
            replace(
                _candidate(d, tenant_id="", source=source, taken=taken, reserved=reserved),
                tenants=frozenset(grants.get(d.key, ())),
            )
            for d in devices.values()
        ]
        chosen = plan(demands, candidates, self._policy) if demands else None
        launched: list[str] = []
        for container, demand in zip(moving, demands, strict=True):
            assert chosen is not None
            single, level, via = _only(chosen, container.id), 2, None
            if not single.choices:
                single, level, via = await self._fallback(
                    demand=demand,
                    container=container,
                    candidates=candidates,
                    source=source,
                    everything=devices,
                    unplaced=single,
                )
            migration_id = await self._record_plan(
                tenant_id=tenants[container.id],
                container_id=container.id,
                source=device,
                reason=request.reason,
                chosen=single,
                extra={"source_peer_url": source_peer_url, "why": request.detail},
                level=level,
                via=via,
            )
            if single.choices:
                launched.append(migration_id)
                target = devices[single.choices[0].target]
                relay = devices[via] if via is not None else None
                self._launch(
                    migration_id, container, target, source_peer_url, level=level, via=relay
                )
        return {
            "migrations": launched,
            "method": chosen.method if chosen else None,
            "unplaced": [u.container_id for u in chosen.unplaced] if chosen else [],
            "deferred": deferred,
        }

    async def _all_devices(self) -> dict[str, DeviceView]:
        """Every device as an operator sees it: with its broker's address and the round
        trips to all its neighbours, which the scheduler needs and a tenant is not shown."""
        listed = await self._registry.request(
            "GET", "/v1/devices", identity=acting_for(""), params={"limit": 1000}
        )
        return {d.key: d for d in (DeviceView.model_validate(i) for i in listed.json()["items"])}

    async def _usable_by(
        self, tenant: Identity, everything: dict[str, DeviceView]
    ) -> dict[str, DeviceView]:
        """The devices ``tenant`` may use (granted to it), as the operator sees them."""
        listed = await self._registry.request(
            "GET", "/v1/devices", identity=tenant, params={"limit": 1000}
        )
        keys = {str(item["key"]) for item in listed.json()["items"]}
        return {key: view for key, view in everything.items() if key in keys}

    async def _published(self) -> list[PublishedPort]:
        """The host ports live containers publish on every node."""
        answer = await self._orchestrator.request("GET", "/v1/nodes/ports", identity=acting_for(""))
        return [PublishedPort.model_validate(item) for item in answer.json()]

    async def _reserved(self) -> dict[str, int]:
        """The memory live containers' limits hold on each node, by the cloud's count."""
        answer = await self._orchestrator.request(
            "GET", "/v1/nodes/reserved", identity=acting_for("")
        )
        return {str(item["device"]): int(item["memory"]) for item in answer.json()}

    async def _grants(
        self, devices: dict[str, DeviceView], operator: Identity
    ) -> dict[str, set[str]]:
        """The tenants each device is granted to."""
        found: dict[str, set[str]] = {}
        for key in devices:
            answer = await self._registry.request(
                "GET", f"/v1/devices/{key}/grants", identity=operator
            )
            found[key] = {g["tenant"] for g in answer.json()["items"]}
        return found

    async def _drive(
        self,
        migration_id: str,
        container: ContainerView,
        target: DeviceView,
        *,
        source_peer_url: str,
        level: int = 2,
        via: DeviceView | None = None,
    ) -> None:
        """Tell the target, then the source; record how it ended. ``source_peer_url``: where
        the source's broker is (its sensors publish there). ``level`` 1: the target keeps
        the package only. The source is the container's node, a keeper when handing on.
        ``via`` (level 0): the two talk through that peer's broker, not the target's."""
        key = secrets.token_urlsafe(32)
        # What the target does: keep (1) or run (2; a level-0 move ends in a run too).
        level = 1 if level == 1 else 2
        outcome: MigrationOutcome
        try:
            link = self._require_link()
            record = await self._record_of(container, source_peer_url)
            relayed = MigrationRelayed()
            if via is not None:
                relayed = MigrationRelayed.model_validate(
                    await link.call(
                        uris.device_procedure(via.key, uris.MIGRATION_RELAY),
                        MigrationRelay(
                            migration=migration_id, source=container.device, target=target.key
                        ).model_dump(mode="json"),
                        timeout=self._expect_timeout_s,
                    )
                )
            # The target answers with the login it made on its broker for the source alone.
            ready = await link.call(
                uris.device_procedure(target.key, uris.MIGRATION_EXPECT),
                MigrationExpectation(
                    migration=migration_id,
                    container_id=container.id,
                    tenant_id=await self._tenant_of(migration_id),
                    source=container.device,
                    key=key,
                    spec=record.spec,
                    image_id=record.image_id,
                    level=level,
                    broker_url=via.peer_url if via is not None else None,
                    login=relayed.target_login,
                ).model_dump(mode="json"),
                timeout=self._expect_timeout_s,
            )
            source_login = (
                relayed.source_login
                if via is not None
                else MigrationReady.model_validate(ready).login
            )
            answer = await link.call(
                uris.device_procedure(container.device, uris.MIGRATION_START),
                MigrationOrder(
                    migration=migration_id,
                    container_id=container.id,
                    docker_name=container.name,
                    target=target.key,
                    target_url=via.peer_url if via is not None else target.peer_url,
                    target_urls=[] if via is not None else target.peer_urls,
                    key=key,
                    login=source_login,
                    level=level,
                ).model_dump(mode="json"),
                timeout=self._move_timeout_s,
            )
            outcome = MigrationOutcome.model_validate(answer)
        except (WampError, ValidationError, RemoteProblem) as err:
            if isinstance(err, WampCallError):
                code = err.error.rsplit(".", 1)[-1]
            else:
                code = err.code if isinstance(err, RemoteProblem) else "unreachable"
            outcome = MigrationOutcome(ok=False, steps=[], error_code=code, error=str(err)[:1000])
        except Exception as err:  # the record must end whatever went wrong
            logger.exception("migration %s broke", migration_id)
            outcome = MigrationOutcome(ok=False, steps=[], error_code="internal", error=str(err))
        if via is not None:
            await self._release(via, migration_id)
        await self._finish(migration_id, outcome)

    async def _release(self, via: DeviceView, migration_id: str) -> None:
        """The relaying peer forgets the migration's logins (it would after a while anyway)."""
        try:
            await self._require_link().call(
                uris.device_procedure(via.key, uris.MIGRATION_RELEASE),
                MigrationRelease(migration=migration_id).model_dump(mode="json"),
                timeout=self._expect_timeout_s,
            )
        except WampError as err:
            logger.info("relay of %s on %s not released: %s", migration_id, via.key, err)

    async def _record_of(self, container: ContainerView, source_peer_url: str) -> ContainerRecord:
        """The cloud's record of the container, as the target is to create it: its sensors
        read on at the broker where they publish (the source's, unless it moved before)."""
        answer = await self._orchestrator.request(
            "GET", f"/v1/containers/{container.id}/record", identity=acting_for("")
        )
        record = ContainerRecord.model_validate(answer.json())
        spec = record.spec
        if spec.subscriptions and spec.sensor_broker is None and source_peer_url:
            spec = spec.model_copy(update={"sensor_broker": source_peer_url})
        return record.model_copy(update={"spec": spec})

    async def _finish(self, migration_id: str, outcome: MigrationOutcome) -> None:
        async with transaction(self._sessions) as session:
            row = await session.get(Migration, migration_id)
            handing_on = row is not None and _handing_on(row)
            for step in outcome.steps:
                await service.add_step(
                    session=session,
                    migration_id=migration_id,
                    step=_as_hand_on(step) if handing_on else step,
                )
            if outcome.ok and outcome.stored:
                await service.store(session=session, migration_id=migration_id)
            elif handing_on and not outcome.ok and outcome.error_code not in PACKAGE_GONE:
                # The keeper still holds the package: handed on again, a while later.
                await service.store(session=session, migration_id=migration_id)
                self._hand_on_after[migration_id] = time.monotonic() + HAND_ON_RETRY_S
                logger.warning(
                    "hand-on of %s failed (%s): kept on %s",
                    migration_id,
                    outcome.error_code,
                    row.keeper if row is not None else "?",
                )
            else:
                if outcome.ok:
                    state = MigrationState.COMPLETED
                elif outcome.rolled_back:
                    state = MigrationState.ROLLED_BACK
                else:
                    state = MigrationState.FAILED
                await service.finish(
                    session=session,
                    migration_id=migration_id,
                    state=state,
                    freeze_ms=outcome.freeze_ms,
                    error_code=outcome.error_code,
                    error=outcome.error,
                )
        await self._announce(migration_id)

    # Level 1: packages waiting on their keepers.

    async def hand_on_stored(self) -> list[str]:
        """Start handing on each stored package that a node can now run; the migrations
        set going. Called every round of the node loss watch (one replica at a time)."""
        async with self._sessions() as session:
            waiting = await service.stored(session=session)
        now = time.monotonic()
        waiting = [row for row in waiting if self._hand_on_after.get(row.id, 0.0) <= now]
        if not waiting:
            return []
        devices = await self._all_devices()
        published = await self._published()
        taken = _taken(published)
        reserved = await self._reserved()
        started: list[str] = []
        for row in waiting:
            assert row.keeper is not None
            keeper = devices.get(row.keeper)
            member = acting_for(row.tenant_id, MEMBER)
            try:
                answer = await self._orchestrator.request(
                    "GET", f"/v1/containers/{row.container_id}", identity=member
                )
            except RemoteProblem as err:
                if err.status == 404:  # removed by its tenant: nothing is left to hand on
                    await self._give_up(row.id, "container_removed", str(err))
                continue
            container = ContainerView.model_validate(answer.json())
            if keeper is None or container.device != keeper.key:
                continue  # its record is elsewhere: nothing of it to hand on from here
            usable = await self._usable_by(member, devices)
            demand = Demand(
                container_id=container.id,
                tenant_id=row.tenant_id,
                source=keeper.key,
                arch=(devices[row.source_device].arch if row.source_device in devices else None),
                cpus=0.0,
                memory=container.limits.memory,
                disk=0,
                ports=_ports_of(container.id, published),
            )
            candidates = [
                _candidate(
                    d, tenant_id=row.tenant_id, source=keeper, taken=taken, reserved=reserved
                )
                for d in usable.values()
                if d.key != row.source_device  # the node it left is failing
            ]
            chosen = plan([demand], candidates, self._policy)
            if not chosen.choices:
                continue
            target = devices[chosen.choices[0].target]
            async with transaction(self._sessions) as session:
                if not await service.hand_on(
                    session=session, migration_id=row.id, target_device=target.key
                ):
                    continue
            started.append(row.id)
            self._hand_on_after.pop(row.id, None)
            logger.info("handing %s on from %s to %s", container.id, keeper.key, target.key)
            await self._announce(row.id)
            # Its sensors are read where the target is: the node it left may be gone.
            self._launch(row.id, container, target, "")
        return started

    async def _give_up(self, migration_id: str, code: str, why: str) -> None:
        async with transaction(self._sessions) as session:
            await service.finish(
                session=session,
                migration_id=migration_id,
                state=MigrationState.FAILED,
                error_code=code,
                error=why,
            )
        await self._announce(migration_id)

    # What the agents say while they move it.

    async def report(self, report: StepReport, *, device: str) -> bool:
        """A step of a migration ``device`` takes part in; False when the migration has
        ended already. The target's activation moves the container's record to the target
        first: the source stops its copy only after this has returned."""
        async with transaction(self._sessions) as session:
            row = await session.get(Migration, report.migration)
            if row is None or device not in (row.source_device, row.target_device, row.keeper):
                raise ReportRefused(errors.NOT_FOUND, "no such migration of this device")
            if row.state in {s.value for s in MIGRATION_DONE}:
                return False
            source, target, container_id = row.source_device, row.target_device, row.container_id
            tenant_id, handing_on = row.tenant_id, _handing_on(row)
            keeper, level = row.keeper, row.level
            source_peer_url = (row.plan or {}).get("source_peer_url") or None
        ended = report.step.duration_ms is not None
        relocation: dict[str, Any] | None = None
        if report.step.name == "activation" and ended and target:
            relocation = {"source": source, "target": target, "sensor_broker": source_peer_url}
            if handing_on:
                # From its keeper; its sensors are read where it runs now.
                relocation.update(source=keeper, sensor_broker=None)
        elif report.step.name == "store" and ended and level == 1 and target:
            # Kept, not run: nothing of it runs until it is handed on.
            relocation = {"source": source, "target": target, "stored": True}
        if relocation is not None:
            try:
                await self._orchestrator.request(
                    "POST",
                    f"/v1/containers/{container_id}/relocation",
                    identity=acting_for(tenant_id),
                    json={**relocation, "migration": report.migration},
                )
            except RemoteProblem as err:
                raise ReportRefused(errors.FAILED_PRECONDITION, str(err)) from err
        async with transaction(self._sessions) as session:
            await service.add_step(
                session=session,
                migration_id=report.migration,
                step=_as_hand_on(report.step) if handing_on else report.step,
                state=report.state,
            )
        await self._announce(report.migration)
        return True

    # A lost node's containers.

    async def cold_restart(self, *, container_id: str, tenant_id: str, lost: DeviceView) -> bool:
        """Start a container of the lost node afresh on a peer, from its last known spec;
        the record says when it ran nowhere. False when it is not this round's to do (a
        migration of it is under way)."""
        member = acting_for(tenant_id, MEMBER)
        async with self._sessions() as session:
            if await _unfinished_for(session, container_id) is not None:
                return False
        answer = await self._orchestrator.request(
            "GET", f"/v1/containers/{container_id}", identity=member
        )
        container = ContainerView.model_validate(answer.json())
        if container.interfaces:
            # Its hardware went down with the node: it waits for the node to come back.
            logger.info(
                "%s stays with lost %s: it holds the node's hardware", container_id, lost.key
            )
            return True
        devices = await self._usable_by(member, await self._all_devices())
        published = await self._published()
        taken = _taken(published)
        reserved = await self._reserved()
        demand = Demand(
            container_id=container.id,
            tenant_id=tenant_id,
            source=lost.key,
            arch=lost.arch,
            cpus=0.0,
            memory=container.limits.memory,
            disk=0,
            ports=_ports_of(container.id, published),
        )
        # The lost node measures nothing any more: its neighbours' view of it stands in.
        candidates = [
            _candidate(
                d, tenant_id=tenant_id, source=None, rtt_from=lost, taken=taken, reserved=reserved
            )
            for d in devices.values()
        ]
        chosen = plan([demand], candidates, self._unmeasured_policy)
        choice = chosen.choices[0] if chosen.choices else None
        migration_id = await self._record_plan(
            tenant_id=tenant_id,
            container_id=container.id,
            source=lost.key,
            reason=MigrationReason.NODE_LOST,
            chosen=chosen,
        )
        if choice is None:
            return True
        started_at, started = utcnow(), time.perf_counter()
        outcome = "cold_restarted"
        try:
            await self._orchestrator.request(
                "POST",
                f"/v1/containers/{container.id}/relocation",
                identity=acting_for(tenant_id),
                json={
                    "source": lost.key,
                    "target": choice.target,
                    "migration": migration_id,
                    "sensor_broker": lost.peer_url or None,
                    "restart": True,
                },
            )
            running = await self._until_running(container.id, member)
        except Problem as err:
            running, outcome = False, str(err)
        async with transaction(self._sessions) as session:
            step = MigrationStep(
                name="restart",
                started_at=started_at,
                duration_ms=_since(started),
            )
            await service.add_step(session=session, migration_id=migration_id, step=step)
            if running:
                await service.finish(
                    session=session,
                    migration_id=migration_id,
                    state=MigrationState.COLD_RESTARTED,
                    lost_window=LostWindow(from_=lost.last_seen or started_at, until=utcnow()),
                )
            else:
                await service.finish(
                    session=session,
                    migration_id=migration_id,
                    state=MigrationState.FAILED,
                    error_code="restart_failed",
                    error=outcome if outcome != "cold_restarted" else "it did not start in time",
                )
        await self._announce(migration_id)
        return True

    async def _until_running(self, container_id: str, member: Identity) -> bool:
        deadline = time.monotonic() + self._move_timeout_s
        while time.monotonic() < deadline:
            answer = await self._orchestrator.request(
                "GET", f"/v1/containers/{container_id}", identity=member
            )
            if ContainerView.model_validate(answer.json()).state == "running":
                return True
            await asyncio.sleep(0.5)
        return False

    # Helpers.

    async def _record_plan(
        self,
        *,
        tenant_id: str,
        container_id: str,
        source: str,
        reason: MigrationReason,
        chosen: Plan,
        extra: dict[str, Any] | None = None,
        selection_ms: float | None = None,
        level: int = 2,
        via: str | None = None,
    ) -> str:
        """A new migration with its peer selection; ended at once as failed when no peer
        could take the container."""
        choice = chosen.choices[0] if chosen.choices else None
        async with transaction(self._sessions) as session:
            row = service.record_migration(
                session,
                tenant_id=tenant_id,
                container_id=container_id,
                source_device=source,
                reason=reason,
            )
            await session.flush()
            await service.set_plan(
                session=session,
                migration_id=row.id,
                target_device=choice.target if choice else "",
                plan={**chosen.as_record(), **(extra or {})},
                level=level,
                via=via,
            )
            step = MigrationStep(
                name="select_peer",
                started_at=row.created_at,
                # What the nodes' state cost to read, with the planning itself.
                duration_ms=selection_ms if selection_ms is not None else chosen.elapsed_ms,
            )
            await service.add_step(
                session=session, migration_id=row.id, step=step, state=MigrationState.PLANNING
            )
            if choice is None:
                await service.finish(
                    session=session,
                    migration_id=row.id,
                    state=MigrationState.FAILED,
                    error_code="no_suitable_peer",
                    error=_why_not(chosen, container_id),
                )
            migration_id = row.id
        await self._announce(migration_id)
        return migration_id

    async def _announce(self, migration_id: str) -> None:
        if self.link is None:
            return
        async with self._sessions() as session:
            row = await session.get(Migration, migration_id)
            if row is None:
                return
            event = MigrationEvent(**service.to_view(row).model_dump(), tenant=row.tenant_id)
        try:
            await self.link.publish(uris.EVENT_MIGRATION, event.model_dump(mode="json"))
        except WampError as err:
            logger.warning("migration event not published: %s", err)

    async def _tenant_of(self, migration_id: str) -> str:
        async with self._sessions() as session:
            row = await session.get(Migration, migration_id)
            assert row is not None
            return row.tenant_id

    def _require_link(self) -> WampLink:
        if self.link is None or not self.link.connected:
            raise WampError("no WAMP link")
        return self.link


def _candidate(
    device: DeviceView,
    *,
    tenant_id: str,
    source: DeviceView | None,
    taken: dict[str, set[HostPort]],
    reserved: dict[str, int],
    rtt_from: DeviceView | None = None,
) -> Candidate:
    """``rtt_from``: a source that measures nothing any more (a lost node); the candidate's
    own measurement of it stands in. ``taken``: the host ports held on each device;
    ``reserved``: the memory its live containers' limits hold there, by the cloud's count.

    What a node says of itself is bounded by what the cloud can check, so that a node that
    lies cannot draw the moves towards itself: the round trip is the longer of the two
    directions measured (a candidate claiming to be next door is judged by the source's
    measurement too), and free memory is at most what the cloud has not given out."""
    metrics = device.metrics
    cpu_free = device.cpu_count * (1 - (metrics.cpu_percent or 0.0) / 100)
    rtt = {}
    if source is not None and device.key in source.neighbours:
        rtt[source.key] = max(source.neighbours[device.key], device.neighbours.get(source.key, 0.0))
    elif rtt_from is not None and rtt_from.key in device.neighbours:
        rtt[rtt_from.key] = max(
            device.neighbours[rtt_from.key], rtt_from.neighbours.get(device.key, 0.0)
        )
    memory_free = device.memory_total - (metrics.memory_used or 0)
    if device.memory_total:
        memory_free = min(memory_free, device.memory_total - reserved.get(device.key, 0))
    return Candidate(
        key=device.key,
        # Compute moves only to nodes on their WAN: a node on the slow mesh cannot take
        # an image or an application volume in reasonable time.
        online=device.status is DeviceStatus.ONLINE,
        arch=device.arch,
        # The registry lists a tenant's caller only the devices granted to it.
        tenants=frozenset({tenant_id}),
        cpu_free=max(0.0, cpu_free),
        memory_free=max(0, memory_free),
        disk_free=metrics.disk_free or 0,
        level=device.collaboration_level if device.peer_url else 0,
        rtt_ms=rtt,
        policy=device.policy,
        ports_taken=frozenset(taken.get(device.key, ())),
    )


def _ports_of(container_id: str, published: list[PublishedPort]) -> frozenset[HostPort]:
    """The host ports a container publishes (held for it on its node)."""
    return frozenset(
        (port.host, port.protocol) for port in published if port.container == container_id
    )


def _taken(published: list[PublishedPort]) -> dict[str, set[HostPort]]:
    taken: dict[str, set[HostPort]] = {}
    for port in published:
        taken.setdefault(port.device, set()).add((port.host, port.protocol))
    return taken


def _why_not(chosen: Plan, container_id: str) -> str:
    excluded = chosen.excluded.get(container_id, [])
    reasons = ", ".join(f"{e.key}: {e.reason}" for e in excluded if e.reason != "is_source")
    return f"no peer can take it ({reasons or 'no other device'})"


def acting_for(tenant_id: str, role: str = OPERATOR) -> Identity:
    """The scheduler's own identity towards the other services: as an operator, or as a
    member of ``tenant_id`` (then it sees only what that tenant may use)."""
    return Identity(
        user_id=SCHEDULER, username=SCHEDULER, tenant_id=tenant_id, roles=frozenset({role})
    )


async def _unfinished_for(session: AsyncSession, container_id: str) -> Migration | None:
    done = [s.value for s in MIGRATION_DONE]
    query = select(Migration).where(
        Migration.container_id == container_id, Migration.state.not_in(done)
    )
    return (await session.scalars(query.limit(1))).first()


def _only(chosen: Plan, container_id: str) -> Plan:
    """The part of a joint plan about one container, recorded with its migration."""
    return replace(
        chosen,
        choices=[c for c in chosen.choices if c.container_id == container_id],
        unplaced=[u for u in chosen.unplaced if u.container_id == container_id],
        weighed={k: v for k, v in chosen.weighed.items() if k == container_id},
        excluded={k: v for k, v in chosen.excluded.items() if k == container_id},
    )


def _handing_on(row: Migration) -> bool:
    """A level-1 migration whose keeper passes the package on (to ``target_device``)."""
    return row.keeper is not None and row.target_device not in (None, row.keeper)


def _as_hand_on(step: MigrationStep) -> MigrationStep:
    """The hand-on's steps, recorded beside the first leg's steps of the same names."""
    return step.model_copy(update={"name": f"hand_on.{step.name}"})


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
