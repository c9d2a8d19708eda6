"""Moving a container to a peer node, and taking one in from a peer (ARCHITECTURE 4.6).

The scheduler tells the target what to expect (``migration.expect``: the migration, the
source, the migration's key, and the cloud's record of the container: its spec and image
ID); the target makes two logins on its broker for this migration alone (its own side and
the source's) and answers with the source's; the scheduler hands it to the source with the
key (``migration.start``). The two agents then talk through the target's Mosquitto at
QoS 2 (:class:`~.channel.PeerChannel`), nobody else being allowed on the migration's
topics, every message sealed with the key:

    source                                   target
    resource_request {container_id}        ->
                                          <- level {level, has_image}
    configuration {feed login}             ->
                                          <- configuration_ok
    file "image" (only if the target lacks that image id), file "app" (/app's tar)
    activate                               ->  load or build as the tenant's own image,
                                               create as any create on the node (its
                                               hardening, network, disk), restore /app,
                                               start
                                          <- activated {activation_ms}
    (the scheduler moves the record)           the source stops and removes its copy
    done                                   ->

The target creates what the cloud's record says, never what the source says: limits,
subscriptions, sensor broker, restart policy all come from the scheduler's ``spec``. What
the source sends must be that container's: an image must have the recorded ID (checked in
the archive before it is loaded), a build context the digest ``spec`` names.

Either side sends ``failed {code, message}`` instead of its next message when it cannot go
on. Until the target has answered ``activated`` and the scheduler has moved the record,
the source's copy keeps running: every failure before that is a rollback (the target
removes whatever it made) and the container never stopped serving.
"""

import asyncio
import base64
import contextlib
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import ValidationError

from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import ContainerSpec
from edgecloud_contracts.migrations import (
    BrokerLogin,
    MigrationExpectation,
    MigrationOrder,
    MigrationOutcome,
    MigrationReady,
    MigrationState,
    MigrationStep,
    StepReport,
)

from ..broker.identities import BrokerError
from ..isolation import volume_files
from ..isolation.node_paths import component
from ..isolation.provision import Provisioner
from ..runtime.docker import file_chunks
from ..runtime.errors import RuntimeFailure, UnsafeName
from ..sensors.feeds import INBOX, SensorFeeds
from ..state.desired import DesiredState
from ..uplink.errors import CommandRejected, UplinkError
from .channel import PeerChannel
from .packages import Package, PackageStore
from .wire import PeerError

logger = logging.getLogger(__name__)

APP_PATH = "/app"
APP_CONTENTS = "/app/."
"""Docker archives this as ``./...``: unpacked at APP_PATH (the root filesystem is
read-only, the application volume is not)."""
REPLY_TIMEOUT_S = 15.0
FILE_TIMEOUT_S = 300.0
ACTIVATION_TIMEOUT_S = 120.0
PEER_KEEPALIVE_S = 5
"""A peer that dies without a word is known dead after 7.5 s (its broker's keepalive)."""
EXPECTATION_TTL_S = 120.0
"""A target gives up on a migration whose source never came."""
PEER_FAILOVER_GRACE_S = 20.0
"""How long a target reachable at several addresses waits for a source its broker
announced lost (keepalive: 7.5 s) to come back over another (noticing its loss takes it
two keepalives, then a connection over the mesh)."""
OUTCOMES_KEPT = 64
KEEP_RESERVE_BYTES = 256 << 20
"""Disk a keeper leaves free beyond a package's /app (its image comes on top)."""


def topic_of(migration: str) -> str:
    return f"edgecloud/peer/{migration}"


class MigrationFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StepReporter:
    """Steps as they happen, to the scheduler: best effort, except where the scheduler
    must act before the migration goes on (``required``)."""

    def __init__(self, call: Callable[..., Awaitable[Any]], migration: str) -> None:
        self._call = call
        self._migration = migration
        self._announcing: set[asyncio.Task[None]] = set()
        self.steps: list[MigrationStep] = []

    @contextlib.asynccontextmanager
    async def step(
        self, name: str, state: MigrationState | None = None, *, required: bool = False
    ) -> AsyncIterator[None]:
        started_at = datetime.now(UTC)
        # Announced on the side: the step's own time is not the scheduler's round trip.
        self._announce(MigrationStep(name=name, started_at=started_at), state)
        started = time.perf_counter()
        yield
        done = MigrationStep(
            name=name,
            started_at=started_at,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        self.steps.append(done)
        await self.report(done, state, required=required)

    def _announce(self, step: MigrationStep, state: MigrationState | None) -> None:
        task = asyncio.create_task(self.report(step, state))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    def timed(self, name: str, started_at: datetime, duration_ms: float) -> MigrationStep:
        """A step measured elsewhere (on the target), recorded as it was measured."""
        step = MigrationStep(name=name, started_at=started_at, duration_ms=duration_ms)
        self.steps.append(step)
        return step

    async def report(
        self, step: MigrationStep, state: MigrationState | None, *, required: bool = False
    ) -> None:
        report = StepReport(migration=self._migration, step=step, state=state)
        try:
            await self._call(uris.MIGRATION_REPORT, report.model_dump(mode="json"), timeout=10)
        except UplinkError as err:
            if required:
                raise MigrationFailed("scheduler_unreachable", str(err)) from err
            logger.info("step %s of migration %s not reported: %s", step.name, self._migration, err)


@dataclass
class _Expected:
    order: MigrationExpectation
    source_login: BrokerLogin | None = None
    task: "asyncio.Task[None] | None" = None
    created: list[str] = field(default_factory=list)
    kept: str | None = None
    """Level 1: the container whose package this migration stored, until it is done."""


class PeerMigrations:
    """This node's part in peer migrations: source of some, target of others."""

    def __init__(
        self,
        *,
        me: str,
        node: Provisioner,
        desired: DesiredState,
        call: Callable[..., Awaitable[Any]],
        work_dir: Path,
        local_broker_url: str,
        collaboration_level: int,
        feeds: SensorFeeds,
        contexts_dir: Path,
        own_peer_url: str = "",
        own_peer_urls: Sequence[str] = (),
        mesh_images: bool = False,
        packages: PackageStore | None = None,
    ) -> None:
        self._me = me
        self._node = node
        self._runtime = node.runtime
        self._desired = desired
        self._call = call
        self._work_dir = work_dir
        self._broker_url = local_broker_url
        self._level = collaboration_level
        self._feeds = feeds
        self._contexts_dir = contexts_dir
        self._own_peer_url = own_peer_url
        self._own_peer_urls = list(own_peer_urls)
        self._mesh_images = mesh_images
        self._outcomes: dict[str, asyncio.Future[MigrationOutcome]] = {}
        """The sources's migrations by id, running or ended lately, for an order repeated."""
        self._packages = packages or PackageStore(work_dir.parent / "packages")
        self._expected: dict[str, _Expected] = {}
        self._moving: set[str] = set()
        self.refused: Counter[str] = Counter()
        """Peer messages refused over all migrations, by reason (:mod:`.channel`)."""

    async def close(self) -> None:
        tasks = [e.task for e in self._expected.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def procedures(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        return {
            uris.device_procedure(self._me, uris.MIGRATION_EXPECT): self.expect,
            uris.device_procedure(self._me, uris.MIGRATION_START): self.start,
        }

    # The target's side.

    async def expect(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        order = _parse(MigrationExpectation, args, kwargs)
        _one_component(order.migration)
        spec = order.spec
        if spec.container_id != order.container_id or spec.tenant_id != order.tenant_id:
            raise CommandRejected(errors.INVALID_ARGUMENT, "the spec is of another container")
        if order.migration in self._expected:
            # A repeated call: already waiting, with the same login for the source.
            ready = MigrationReady(login=self._expected[order.migration].source_login)
            return ready.model_dump(mode="json")
        if self._level < order.level:
            raise CommandRejected(
                errors.FAILED_PRECONDITION, f"this node offers peers level {self._level} only"
            )
        if spec.devices:
            # Only the orchestrator gives a container this node's devices, never a move.
            raise CommandRejected(
                errors.FAILED_PRECONDITION, "a container holding its node's devices stays"
            )
        if order.level == 1:
            # Kept, not run: only the room for its package counts.
            free = shutil.disk_usage(self._work_dir).free
            if free < spec.limits.disk + KEEP_RESERVE_BYTES:
                raise CommandRejected(
                    errors.FAILED_PRECONDITION, f"no room to keep it ({free} bytes free)"
                )
        else:
            try:
                self._runtime.policy.check(spec)
            except RuntimeFailure as err:
                raise CommandRejected(errors.FAILED_PRECONDITION, err.message) from err
        mine = theirs = None
        broker_url, grace = self._broker_url, 0.0
        identities = self._node.identities
        if order.broker_url is not None:
            # Level 0: through the broker of a peer that reaches both sides; it made the
            # logins there, and the key seals every message all the same.
            broker_url, mine = order.broker_url, order.login
        elif identities is not None:
            try:
                mine, theirs = await identities.migration(
                    order.migration, me=self._me, peer=order.source
                )
            except BrokerError as err:
                raise CommandRejected(errors.UNAVAILABLE, f"the local broker: {err}") from err
        # Subscribed before answering: the source starts talking as soon as it has the answer.
        # A source that can reach this broker at another address may fall over to it: the
        # last will the broker sends for its lost connection waits for it to come back.
        if order.broker_url is None and len(self._own_peer_urls) > 1:
            grace = PEER_FAILOVER_GRACE_S
        channel = self._channel(broker_url, mine, order.key, will_grace_s=grace)
        try:
            await channel.connect(order.source, topic_of(order.migration))
        except PeerError as err:
            await self._forget_logins(order.migration)
            raise CommandRejected(errors.UNAVAILABLE, f"the local broker: {err}") from err
        expected = _Expected(order, theirs)
        self._expected[order.migration] = expected
        expected.task = asyncio.create_task(
            self._receive(expected, channel), name=f"migration-in-{order.migration}"
        )
        return MigrationReady(login=theirs).model_dump(mode="json")

    async def _forget_logins(self, migration: str) -> None:
        if self._node.identities is not None:
            try:
                await self._node.identities.forget("peer", migration)
            except BrokerError as err:
                logger.warning("logins of migration %s not removed: %s", migration, err)

    async def _receive(self, expected: _Expected, channel: PeerChannel) -> None:
        order = expected.order
        incoming = Path(
            tempfile.mkdtemp(prefix=f"in-{component(order.migration)}-", dir=self._work_dir)
        )
        try:
            try:
                await self._serve(channel, expected, incoming)
            except (MigrationFailed, PeerError, RuntimeFailure) as err:
                code = getattr(err, "code", "runtime_error")
                logger.warning(
                    "migration %s in from %s failed: %s", order.migration, order.source, err
                )
                await self._undo(expected)
                with contextlib.suppress(Exception):
                    await channel.send("failed", {"code": str(code), "message": str(err)[:500]})
            except TimeoutError:
                logger.warning("migration %s: %s went silent", order.migration, order.source)
                await self._undo(expected)
        except Exception:
            logger.exception("migration %s in from %s broke", order.migration, order.source)
            await self._undo(expected)
        finally:
            self._count_refused(order.migration, channel)
            with contextlib.suppress(Exception):
                await channel.disconnect(end_session=True)
            await self._forget_logins(order.migration)
            shutil.rmtree(incoming, ignore_errors=True)
            self._expected.pop(order.migration, None)

    async def _serve(self, channel: PeerChannel, expected: _Expected, incoming: Path) -> None:
        order = expected.order
        # The cloud's record, not the peer's word; its image is the tenant's own here.
        spec = order.spec.model_copy(update={"image_archive": None})
        request = await self._next(channel, order.source, "resource_request", EXPECTATION_TTL_S)
        if request.get("container_id") != order.container_id:
            raise MigrationFailed("not_expected", "no such migration is expected here")
        # The tenant's own image, or a shared one of that name: never another tenant's. A
        # keeper keeps the image with the package whatever it has: Docker may drop its own.
        has_image = (
            order.level == 2
            and order.image_id is not None
            and await self._node.images.may_use(order.tenant_id, spec.image, order.image_id)
        )
        await channel.send("level", {"level": self._offered_level(spec), "has_image": has_image})

        configuration = await self._next(channel, order.source, "configuration", REPLY_TIMEOUT_S)
        if not configuration.keys() <= {"feed"}:
            # The container is the cloud's to describe: a peer that tries is not heard.
            raise MigrationFailed("bad_configuration", f"unexpected {sorted(configuration)}")
        feed_login = None
        if spec.subscriptions and spec.sensor_broker is not None and order.level == 2:
            # Read on at its source's broker, with the login the source made there.
            try:
                feed_login = BrokerLogin.model_validate(configuration.get("feed"))
            except ValidationError as err:
                raise MigrationFailed("bad_configuration", "no login for its sensors") from err
        await channel.send("configuration_ok", {})

        sent = await self._next(channel, order.source, "dependencies", REPLY_TIMEOUT_S)
        image_file = incoming / "image.tar"
        context_file = (
            self._contexts_dir / f"{spec.build_context.sha256}.tar"
            if spec.build_context is not None
            else incoming / "context.tar"
        )
        if sent.get("context"):
            # Kept like a context of this node's own: it may move on from here.
            self._contexts_dir.mkdir(parents=True, exist_ok=True)
            received = await channel.receive_file("context", context_file, timeout=FILE_TIMEOUT_S)
            if spec.build_context is None or received.sha256 != spec.build_context.sha256:
                context_file.unlink(missing_ok=True)
                raise MigrationFailed("bad_context", "not the build context of this container")
        app_file = incoming / "app.tar"
        if sent.get("image"):
            if order.image_id is None:
                raise MigrationFailed("bad_image", "the cloud knows no image of this container")
            await channel.receive_file("image", image_file, timeout=FILE_TIMEOUT_S)
        await channel.receive_file("app", app_file, timeout=FILE_TIMEOUT_S)
        if order.level == 1:
            await self._keep(
                channel, expected, spec, app_file, image_file if sent.get("image") else None
            )
            return

        await self._next(channel, order.source, "activate", REPLY_TIMEOUT_S)
        started = time.perf_counter()
        if sent.get("image"):
            assert order.image_id is not None
            # Loaded as the tenant's own image, under no tag the archive may carry, and only
            # if it is the image the container was created from.
            try:
                image_id = await self._node.images.load(
                    spec, image_file, source=f"image:{order.image_id}", expected=order.image_id
                )
            except RuntimeFailure as err:
                raise MigrationFailed("bad_image", err.message) from err
        elif sent.get("context"):
            image_id = await self._node.images.build(spec, context_file)
        elif has_image:
            assert order.image_id is not None
            image_id = order.image_id
        elif sent.get("pull"):
            image_id = await self._pull(spec, order.image_id)
        else:
            raise MigrationFailed("no_image", "neither the image nor its context came")
        if feed_login is not None:
            assert self._node.identities is not None
            self._node.identities.remember_remote_feed(spec.container_id, feed_login)
        # Its sensors are read here only once the source has stopped reading them.
        await self._feeds.hold(spec.container_id)
        self._desired.put(spec, running=True)
        expected.created.append(spec.container_id)
        # The same path as any create on this node: its own policy, hardening, network,
        # disk and broker login.
        report = await self._node.create(spec, image_id)
        await self._runtime.put_archive(
            spec.docker_name,
            container_id=spec.container_id,
            path=APP_PATH,
            tar=file_chunks(app_file),
        )
        # The source's inbox came along with the volume: its lines were handled there.
        root = self._node.app_root(spec.container_id)
        if root is not None:
            await asyncio.to_thread(volume_files.remove_file, root, INBOX)
        if report.state == "created":
            report = await self._runtime.start_created(report)
        await channel.send(
            "activated",
            {
                "activation_ms": round((time.perf_counter() - started) * 1000, 2),
                "docker_id": report.docker_id,
            },
        )
        # The source now stops its copy; an abort before "done" means the scheduler could
        # not move the record, and this copy must go again.
        answer = await channel.get_message(order.source, timeout=ACTIVATION_TIMEOUT_S)
        if answer.kind != "done":
            raise MigrationFailed("aborted", str(answer.body.get("message", answer.kind)))
        expected.created.clear()
        replay = answer.body.get("replay")
        if isinstance(replay, list):
            await self._feeds.replay(spec.container_id, [str(line) for line in replay])
        self._feeds.release(spec.container_id, start=spec)

    async def _keep(
        self,
        channel: PeerChannel,
        expected: _Expected,
        spec: ContainerSpec,
        app_file: Path,
        image_file: Path | None,
    ) -> None:
        """Level 1: keep the package durably, then the source stops its copy. The image is
        not checked here: whoever runs it loads it only if it is the recorded one."""
        order = expected.order
        await self._next(channel, order.source, "store", REPLY_TIMEOUT_S)
        started = time.perf_counter()
        package = await asyncio.to_thread(
            self._packages.keep,
            migration=order.migration,
            spec=spec,
            image_id=order.image_id,
            app_file=app_file,
            image_file=image_file,
        )
        expected.kept = package.container_id
        await channel.send("stored", {"store_ms": round((time.perf_counter() - started) * 1000, 2)})
        answer = await channel.get_message(order.source, timeout=ACTIVATION_TIMEOUT_S)
        if answer.kind != "done":
            raise MigrationFailed("aborted", str(answer.body.get("message", answer.kind)))
        expected.kept = None
        logger.info("keeping %s for a node that can run it", package.container_id)

    def _offered_level(self, spec: ContainerSpec) -> int:
        """What this node can offer now: less than announced when it lacks the room."""
        memory = psutil.virtual_memory()
        needed = spec.limits.memory if spec.limits is not None else 0
        if needed and memory.available < needed:
            return min(self._level, 1)
        return self._level

    async def _undo(self, expected: _Expected) -> None:
        if expected.kept is not None:
            self._packages.drop(expected.kept)
            expected.kept = None
        for container_id in expected.created:
            self._feeds.release(container_id)
            desired = self._desired.get(container_id)
            self._desired.remove(container_id)
            if desired is not None:
                with contextlib.suppress(RuntimeFailure):
                    await self._node.remove(
                        desired.spec.docker_name,
                        container_id=container_id,
                        tenant_id=desired.spec.tenant_id,
                    )
        expected.created.clear()

    # The source's side.

    async def start(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        order = _parse(MigrationOrder, args, kwargs)
        _one_component(order.migration)
        known = self._outcomes.get(order.migration)
        if known is not None:
            # The scheduler asks again: its call went down with the link it came over (the
            # WAN, say) while the migration went on over the next.
            return (await asyncio.shield(known)).model_dump(mode="json")
        if order.container_id in self._moving:
            raise CommandRejected(errors.FAILED_PRECONDITION, "this container is moving already")
        self._moving.add(order.container_id)
        ending = self._outcomes[order.migration] = asyncio.get_running_loop().create_future()
        try:
            outcome = await self._send_away(order)
            ending.set_result(outcome)
        except BaseException:
            ending.cancel()
            self._outcomes.pop(order.migration, None)
            raise
        finally:
            self._moving.discard(order.container_id)
            while len(self._outcomes) > OUTCOMES_KEPT:
                del self._outcomes[next(iter(self._outcomes))]
        return outcome.model_dump(mode="json")

    async def _send_away(self, order: MigrationOrder) -> MigrationOutcome:
        """Send the container away: a container running here, or (handing on) a package
        this node keeps for the cloud. ``order.level`` 1: the target only keeps it."""
        desired = self._desired.get(order.container_id)
        package = self._packages.get(order.container_id) if desired is None else None
        if desired is None and package is None:
            return MigrationOutcome(
                ok=False, steps=[], error_code="container_not_here", error="no such container"
            )
        spec = desired.spec if desired is not None else package.spec  # type: ignore[union-attr]
        # Its sensors are handed over only from a running copy, to a node that runs it.
        hands_sensors = package is None and order.level == 2 and bool(spec.subscriptions)
        steps = StepReporter(self._call, order.migration)
        outgoing = Path(
            tempfile.mkdtemp(prefix=f"out-{component(order.migration)}-", dir=self._work_dir)
        )
        # The target's broker over each of its links in order: the WAN, then the mesh.
        channel = self._channel(order.target_urls or [order.target_url], order.login, order.key)
        activated = False
        try:
            await channel.connect(order.target, topic_of(order.migration))
            async with steps.step("resource_request", MigrationState.TRANSFERRING):
                if package is not None:
                    image_id = package.image_id
                else:
                    image_id = await self._runtime.image_of(
                        spec.docker_name, container_id=spec.container_id
                    )
                await channel.send("resource_request", {"container_id": order.container_id})
                level = await self._next(channel, order.target, "level", REPLY_TIMEOUT_S)
                if int(level.get("level", 0)) < order.level:
                    raise MigrationFailed(
                        "peer_level_too_low",
                        f"{order.target} offers level {level.get('level')}, "
                        f"this move needs {order.level}",
                    )
            async with steps.step("configuration"):
                # The target has the container's spec from the cloud: here only what the cloud
                # cannot give, the login its sensors are read with on this node's broker.
                configuration: dict[str, Any] = {}
                if hands_sensors:
                    if spec.sensor_broker is None and not self._own_peer_url:
                        raise MigrationFailed(
                            "no_peer_url", "its sensors need this node's broker to be reachable"
                        )
                    # The target reads its sensors on, under the same login and session.
                    login = await self._feeds.login(spec)
                    configuration["feed"] = login.model_dump(mode="json")
                await channel.send("configuration", configuration)
                await self._next(channel, order.target, "configuration_ok", REPLY_TIMEOUT_S)
            async with steps.step("dependencies"):
                missing = not level.get("has_image")
                context = self._context_of(spec)
                # The tenant chose to build: the peer builds from the (small) context.
                send_context = missing and context is not None
                send_image = missing and not send_context
                pull = False
                if not self._mesh_images:
                    # The link policy: an image never crosses the mesh, not even the rest of
                    # one begun over the WAN (the channel refuses, and the move rolls back).
                    channel.first_address_only = frozenset({"image"})
                    if send_image and not channel.on_first_address:
                        pull, send_image = self._pullable(spec), False
                await channel.send(
                    "dependencies", {"image": send_image, "context": send_context, "pull": pull}
                )
                if send_context:
                    assert context is not None
                    await channel.send_file("context", context)
                if send_image:
                    await channel.send_file(
                        "image", await self._image_file(image_id, package, outgoing)
                    )
                await channel.send_file("app", await self._app_file(spec, package, outgoing))
            if order.level == 1:
                return await self._stored(order, channel, steps, spec)
            await channel.send("activate", {})
            answer = await self._next(channel, order.target, "activated", ACTIVATION_TIMEOUT_S)
            activated = True
            # Stop reading its sensors: the broker keeps them for the target, which is also
            # given again the last lines this copy may not have read yet.
            if hands_sensors:
                await self._feeds.hold(order.container_id)
            handing_over = time.perf_counter()
            # Measured on the target; reported before the record moves (required: the
            # scheduler moves it when it hears of this step).
            activation = steps.timed(
                "activation", datetime.now(UTC), float(answer.get("activation_ms", 0.0))
            )
            await steps.report(activation, MigrationState.ACTIVATING, required=True)
            # The target reads the sensors from now on; then this copy goes. The record is
            # the target's already, so this node's reports of it change nothing in the cloud.
            replay = self._feeds.recent(order.container_id) if hands_sensors else []
            with contextlib.suppress(Exception):
                await channel.send("done", {"replay": replay})
            # Both copies ran meanwhile: only the sensors' hand-over leaves a gap.
            freeze_ms = (time.perf_counter() - handing_over) * 1000 if hands_sensors else 0.0
            if package is not None:
                # Handed on: it runs on the target, nothing of it is kept here.
                self._packages.drop(order.container_id)
                return MigrationOutcome(ok=True, steps=steps.steps, freeze_ms=0.0)
            async with steps.step("stop_source"):
                await self._stop_copy(spec, keep_feed=True)
            return MigrationOutcome(ok=True, steps=steps.steps, freeze_ms=round(freeze_ms, 2))
        except (MigrationFailed, PeerError, RuntimeFailure, BrokerError, TimeoutError) as err:
            code = getattr(err, "code", None) or (
                "peer_timeout" if isinstance(err, TimeoutError) else "runtime_error"
            )
            logger.warning("migration %s to %s failed: %s", order.migration, order.target, err)
            self._feeds.release(order.container_id)  # the copy here reads on
            with contextlib.suppress(Exception):
                await channel.send("failed", {"code": str(code), "message": str(err)[:500]})
            # Nothing here stopped: the copy on this node serves on (or the package stays).
            return MigrationOutcome(
                ok=False,
                steps=steps.steps,
                error_code=str(code),
                error=str(err)[:1000],
                rolled_back=not activated
                or self._desired.get(order.container_id) is not None
                or self._packages.get(order.container_id) is not None,
            )
        finally:
            self._count_refused(order.migration, channel)
            with contextlib.suppress(Exception):
                await channel.disconnect(end_session=True)
            shutil.rmtree(outgoing, ignore_errors=True)

    async def _stored(
        self, order: MigrationOrder, channel: PeerChannel, steps: StepReporter, spec: ContainerSpec
    ) -> MigrationOutcome:
        """Level 1: once the keeper holds the package and the scheduler has recorded it
        there, this copy stops; the keeper hands it on when a node can run it."""
        await channel.send("store", {})
        answer = await self._next(channel, order.target, "stored", ACTIVATION_TIMEOUT_S)
        stored = steps.timed("store", datetime.now(UTC), float(answer.get("store_ms", 0.0)))
        # Required: the record moves to the keeper before anything here stops.
        await steps.report(stored, MigrationState.ACTIVATING, required=True)
        async with steps.step("stop_source"):
            await self._stop_copy(spec, keep_feed=False)
        with contextlib.suppress(Exception):
            await channel.send("done", {})
        return MigrationOutcome(ok=True, steps=steps.steps, freeze_ms=None, stored=True)

    async def _stop_copy(self, spec: ContainerSpec, *, keep_feed: bool) -> None:
        """This node's copy goes (its record is elsewhere now). ``keep_feed``: the target
        reads this broker with its feed login from now on."""
        self._desired.remove(spec.container_id)
        with contextlib.suppress(RuntimeFailure):
            await self._node.remove(
                spec.docker_name,
                container_id=spec.container_id,
                tenant_id=spec.tenant_id,
                keep_feed=keep_feed,
            )
        self._feeds.release(spec.container_id)
        self._feeds.forget(spec.container_id)

    async def _image_file(
        self, image_id: str | None, package: Package | None, outgoing: Path
    ) -> Path:
        if package is not None:
            if package.image_file is None:
                raise MigrationFailed("no_image", "the package holds no image and no context")
            return package.image_file
        if image_id is None:
            raise MigrationFailed("no_image", "the container's image is unknown here")
        image_file = outgoing / "image.tar"
        await self._node.images.save(image_id, image_file)
        return image_file

    async def _app_file(self, spec: ContainerSpec, package: Package | None, outgoing: Path) -> Path:
        if package is not None:
            return package.app_file
        app_file = outgoing / "app.tar"
        await self._runtime.copy_out(
            spec.docker_name,
            container_id=spec.container_id,
            path=APP_CONTENTS,
            destination=app_file,
        )
        return app_file

    def _count_refused(self, migration: str, channel: PeerChannel) -> None:
        if channel.refused:
            self.refused.update(channel.refused)
            logger.warning(
                "migration %s: refused %s from %s's topic",
                migration,
                ", ".join(f"{count} {why}" for why, count in sorted(channel.refused.items())),
                channel.peer,
            )

    def _context_of(self, spec: ContainerSpec) -> Path | None:
        """The build context this node built the container's image from, if it has it."""
        if spec.build_context is None:
            return None
        kept = self._contexts_dir / f"{spec.build_context.sha256}.tar"
        return kept if kept.exists() else None

    @staticmethod
    def _pullable(spec: ContainerSpec) -> bool:
        """Over the mesh, with the image missing on the target: True when the target can
        pull it from its registry instead (MigrationFailed when nothing can bring it)."""
        if spec.image_archive is not None:
            raise MigrationFailed(
                "image_needs_wan",
                "the tenant's own image may not cross the mesh and no registry has it",
            )
        return True

    async def _pull(self, spec: ContainerSpec, image_id: str | None) -> str:
        """The target pulls the image the source kept off the mesh: it must be the one the
        container was created from (a tag moved meanwhile is refused)."""
        try:
            pulled = await self._node.images.pull(spec.image)
        except RuntimeFailure as err:
            raise MigrationFailed("image_pull_failed", err.message) from err
        if image_id is not None and pulled != image_id:
            raise MigrationFailed("image_changed", f"{spec.image} is {pulled} now, not {image_id}")
        return pulled

    def _channel(
        self,
        broker_url: str | Sequence[str],
        login: BrokerLogin | None,
        key: str,
        *,
        will_grace_s: float = 0.0,
    ) -> PeerChannel:
        return PeerChannel(
            me=self._me,
            key=migration_key(key),
            broker_url=broker_url,
            login=login,
            keepalive_s=PEER_KEEPALIVE_S,
            will_grace_s=will_grace_s,
            # Said by the broker if this node vanishes: the peer stops waiting at once.
            last_will=("failed", {"code": "peer_lost", "message": f"{self._me} went away"}),
        )

    @staticmethod
    async def _next(channel: PeerChannel, peer: str, kind: str, timeout: float) -> dict[str, Any]:
        """The peer's next message, which must be ``kind`` (or its ``failed``)."""
        message = await channel.get_message(peer, timeout=timeout)
        if message.kind == "failed":
            raise MigrationFailed(
                str(message.body.get("code", "peer_failed")),
                str(message.body.get("message", ""))[:500],
            )
        if message.kind != kind:
            raise MigrationFailed("unexpected_message", f"expected {kind}, got {message.kind}")
        return message.body


def migration_key(text: str) -> bytes:
    """The key the scheduler gave (base64url, no padding) as the channel takes it."""
    return base64.urlsafe_b64decode(text + "=")


def _parse(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if len(args) != 1 or kwargs:
        raise CommandRejected(errors.INVALID_ARGUMENT, "expected one argument")
    try:
        return model.model_validate(args[0])
    except ValidationError as err:
        raise CommandRejected(errors.INVALID_ARGUMENT, f"invalid: {err}"[:1000]) from err


def _one_component(migration: str) -> None:
    """Refuse, before anything is made, a migration id that could not name its scratch
    directory (it is joined to the node's work directory)."""
    try:
        component(migration)
    except UnsafeName as err:
        raise CommandRejected(errors.INVALID_ARGUMENT, err.message) from err
