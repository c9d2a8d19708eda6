"""Container commands from the cloud, applied once each.

Commands arrive at least once. Each command id is applied by one task that outlives the
call that brought it (a caller that times out does not cut a create in half); a repeat
delivered meanwhile waits for that task, a repeat delivered later is answered from the
journal. A create converges: the container it makes carries the cloud's container id
as a label, so re-running a create that got as far as Docker finds that container
instead of making a second one.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edgecloud_contracts import errors
from edgecloud_contracts.artifacts import TransferRef
from edgecloud_contracts.containers import (
    Action,
    Command,
    CommandResult,
    ContainerReport,
    ContainerSpec,
    PullProgress,
)

from ..broker.identities import BrokerError
from ..isolation.node_paths import child, component
from ..isolation.provision import Provisioner
from ..peers.packages import PackageStore
from ..runtime.docker import DockerRuntime
from ..runtime.errors import (
    ContainerNotFound,
    ImageLoadFailed,
    RuntimeFailure,
    RuntimeUnavailable,
    UnsafeName,
)
from ..runtime.hardening import DOCKER_NAME
from ..runtime.reports import PullStatus
from ..sensors.feeds import SensorFeeds
from ..state.desired import DesiredState
from ..state.journal import CommandJournal
from ..uplink.errors import CommandRejected
from . import transfer_urls
from .applications import Deployments
from .transfers import CloudFiles, DownloadFailed, DownloadProgress, UploadFailed

logger = logging.getLogger(__name__)

PullListener = Callable[[PullProgress], None]
_T = TypeVar("_T")
_MAX_ERROR = 1000


@dataclass(slots=True)
class _Running:
    command: Command
    task: "asyncio.Task[CommandResult]"


def check(command: Command) -> None:
    """Refuse a command that is malformed for this node (nothing is done for it)."""
    if not DOCKER_NAME.match(command.docker_name):
        raise CommandRejected(errors.INVALID_ARGUMENT, "docker_name is not a valid name")
    if command.action is Action.CREATE:
        spec = command.spec
        if spec is None:
            raise CommandRejected(errors.INVALID_ARGUMENT, "a create needs a spec")
        if (spec.container_id, spec.docker_name) != (command.container_id, command.docker_name):
            raise CommandRejected(
                errors.INVALID_ARGUMENT, "the spec names another container than the command"
            )
    elif command.spec is not None:
        raise CommandRejected(errors.INVALID_ARGUMENT, f"a {command.action} takes no spec")
    orders = {Action.DEPLOY: command.deployment, Action.FILES: command.files}
    for action, order in orders.items():
        if (command.action is action) != (order is not None):
            raise CommandRejected(
                errors.INVALID_ARGUMENT, f"a {action} order comes with a {action} command only"
            )
    if command.deployment is not None and (
        command.deployment.container_id,
        command.deployment.docker_name,
    ) != (command.container_id, command.docker_name):
        raise CommandRejected(
            errors.INVALID_ARGUMENT, "the deployment names another container than the command"
        )
    try:
        for name in _node_names(command):
            component(name)
        for url in _transfer_urls(command):
            transfer_urls.check(url)
    except UnsafeName as err:
        raise CommandRejected(errors.INVALID_ARGUMENT, err.message) from err
    except transfer_urls.UnsafeUrl as err:
        raise CommandRejected(errors.INVALID_ARGUMENT, str(err)) from err


def _node_names(command: Command) -> list[str]:
    """Every name in the command that the node joins to one of its directories."""
    names = [command.id, command.container_id]
    if command.deployment is not None:
        names += [command.deployment.deployment_id, command.deployment.script.name]
    return names


def _transfer_urls(command: Command) -> list[str]:
    """Every URL the command would have the node fetch from or send to."""
    refs = [command.spec.image_archive, command.spec.build_context] if command.spec else []
    if command.deployment is not None:
        refs += [command.deployment.archive, command.deployment.script]
    urls = [ref.url for ref in refs if ref is not None]
    return urls + ([command.files.url] if command.files is not None else [])


class CommandExecutor:
    def __init__(
        self,
        *,
        node: Provisioner,
        journal: CommandJournal,
        desired: DesiredState,
        stop_timeout_s: float = 10.0,
        on_pull: PullListener | None = None,
        deployments: Deployments | None = None,
        files: CloudFiles | None = None,
        outgoing_dir: Path | None = None,
        bulk_gate: Callable[[], Awaitable[None]] | None = None,
        copy_out_max_bytes: int | None = None,
        packages: PackageStore | None = None,
        feeds: SensorFeeds | None = None,
    ) -> None:
        """``bulk_gate`` holds image pulls while the node is on the slow mesh.
        ``packages``: containers this node keeps for peers (level 1), dropped on removal.
        ``feeds``: the containers' sensor feeds, cut by an unsubscribe."""
        self._node = node
        self._runtime = node.runtime
        self._copy_out_max = copy_out_max_bytes
        self._bulk_gate = bulk_gate
        self._journal = journal
        self._desired = desired
        self._stop_timeout = stop_timeout_s
        self._on_pull = on_pull
        self._deployments = deployments
        self._files = files
        self._outgoing = outgoing_dir
        self._packages = packages
        self._feeds = feeds
        self._running: dict[str, _Running] = {}

    @property
    def runtime(self) -> DockerRuntime:
        return self._runtime

    async def execute(self, command: Command) -> CommandResult:
        """Apply ``command`` once; a repeat gets the first result with ``replayed`` set.

        Raises :class:`CommandRejected` for a command this node will not act on.
        """
        check(command)
        if command.action is Action.INSPECT:
            return await self._inspect(command)  # changes nothing: no need to remember it
        entry = self._journal.get(command.id)
        if entry is not None:
            _same_command(command, entry.action, entry.container_id)
            return entry.result.model_copy(update={"replayed": True})
        running = self._running.get(command.id)
        if running is not None:
            _same_command(running.command, command.action, command.container_id)
            # Shielded: a repeat whose caller gives up must not cancel the first delivery.
            result = await asyncio.shield(running.task)
            return result.model_copy(update={"replayed": True})
        task = asyncio.create_task(self._apply_once(command), name=f"command {command.id}")
        self._running[command.id] = _Running(command, task)
        task.add_done_callback(lambda done: self._finished(command.id, done))
        return await asyncio.shield(task)

    def _finished(self, command_id: str, task: "asyncio.Task[CommandResult]") -> None:
        self._running.pop(command_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("command %s failed", command_id, exc_info=task.exception())

    async def wait_idle(self, timeout: float) -> None:
        """Let commands in progress finish (up to ``timeout``) before the agent stops."""
        tasks = [running.task for running in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _apply_once(self, command: Command) -> CommandResult:
        fields = {"command_id": command.id, "action": command.action.value}
        logger.info(
            "applying %s command %s to %s",
            command.action,
            command.id,
            command.docker_name,
            extra=fields,
        )
        try:
            container = await self._apply(command)
        except RuntimeUnavailable as err:
            # Not remembered: the engine was away or silent, so a repeat should try again
            # (a create converges on what Docker may have done; the rest are idempotent).
            logger.warning("command %s not applied: %s", command.id, err.message, extra=fields)
            return _failed(command, err)
        except RuntimeFailure as err:
            result = _failed(command, err)
            logger.info("command %s failed: %s", command.id, err.message, extra=fields)
        else:
            result = CommandResult(command_id=command.id, ok=True, container=container)
            logger.info("command %s done", command.id, extra=fields)
        self._journal.record(command, result)
        return result

    async def _apply(self, command: Command) -> ContainerReport | None:
        name, container_id = command.docker_name, command.container_id
        match command.action:
            case Action.CREATE:
                assert command.spec is not None  # check() made sure
                return await self._create(command.id, command.spec)
            case Action.START:
                report = await self._runtime.start(name, container_id=container_id)
                self._desired.set_running(container_id, True)
                return report
            case Action.STOP:
                report = await self._runtime.stop(
                    name, container_id=container_id, timeout_s=self._stop_timeout
                )
                self._desired.set_running(container_id, False)
                return report
            case Action.RESTART:
                report = await self._runtime.restart(
                    name, container_id=container_id, timeout_s=self._stop_timeout
                )
                self._desired.set_running(container_id, True)
                return report
            case Action.REMOVE:
                # The cloud no longer wants it, whatever Docker says next.
                desired = self._desired.get(container_id)
                self._desired.remove(container_id)
                if self._packages is not None and self._packages.drop(container_id):
                    logger.info("package of %s removed with its container", container_id)
                await self._node.remove(
                    name,
                    container_id=container_id,
                    tenant_id=desired.spec.tenant_id if desired is not None else None,
                )
                return None
            case Action.DEPLOY:
                assert command.deployment is not None  # check() made sure
                # The container must be ours; the work itself goes on after this answer.
                found = await self._runtime.inspect(name)
                if found is None or found.container_id != container_id:
                    raise ContainerNotFound(f"no container {name} for {container_id}")
                self._need(self._deployments).accept(command.deployment)
                return found
            case Action.FILES:
                assert command.files is not None
                await self._copy_out(command)
                return None
            case Action.UNSUBSCRIBE:
                await self._unsubscribe(container_id)
                return None
        raise CommandRejected(errors.INVALID_ARGUMENT, f"unknown action {command.action}")

    async def _unsubscribe(self, container_id: str) -> None:
        """No sensor message reaches the container any more: its record keeps no
        subscriptions (so no restart of the agent feeds it again), its feed stops, and its
        feed login is deleted from the broker, which disconnects it and drops the session
        holding the messages not yet given to it. Repeating it changes nothing."""
        desired = self._desired.get(container_id)
        if desired is not None and (desired.spec.subscriptions or desired.spec.sensor_broker):
            muted = desired.spec.model_copy(update={"subscriptions": [], "sensor_broker": None})
            self._desired.put(muted, running=desired.running)
        if self._feeds is not None:
            await self._feeds.cut(container_id)
        identities = self._node.identities
        if identities is not None:
            try:
                await identities.forget("feed", container_id)
            except BrokerError as err:
                # Not remembered as done: the cloud sends it again until the login is gone.
                raise RuntimeUnavailable(f"the node's broker: {err}") from err
            identities.forget_remote_feed(container_id)

    async def _create(self, command_id: str, spec: ContainerSpec) -> ContainerReport:
        """Image, create, start: all of it, or no container at all. A container of that
        name from before is found by create itself (a name clash): ours is taken over,
        anyone else's refused."""
        self._runtime.policy.check(spec)
        kept = self._desired.kept_copy(spec.container_id)
        if kept is not None and kept.generation != spec.generation:
            # Placed here again: the copy kept from an older placement gives way to it.
            logger.warning("the kept copy of %s gives way to a new placement", spec.docker_name)
            await self._node.remove(
                kept.docker_name, container_id=kept.container_id, tenant_id=kept.tenant_id
            )
            self._desired.remove(spec.container_id)
        self._desired.put(spec, running=True)
        try:
            image_id = await self._image(command_id, spec)
            report = await self._node.create(spec, image_id)
            if report.state == "created":
                report = await self._runtime.start_created(report)
            return report
        except RuntimeFailure:
            self._desired.remove(spec.container_id)
            await self._discard(spec)
            raise

    async def _image(self, command_id: str, spec: ContainerSpec) -> str:
        """The ID of the image the container runs: the one the node keeps for its tenant,
        else loaded from the tenant's archive, built from its context or pulled."""
        images = self._node.images
        found = await images.find(spec)
        if found is not None:
            return found
        if spec.image_archive is not None:
            return await self._load_image(command_id, spec)
        if spec.build_context is not None:
            return await self._build_image(command_id, spec)
        listener = self._pull_listener(command_id)
        if self._bulk_gate is not None:
            if listener is not None:
                listener(PullStatus(spec.image, "waiting for the WAN link to pull"))
            await self._bulk_gate()
        return await images.pull(spec.image, listener)

    async def _load_image(self, command_id: str, spec: ContainerSpec) -> str:
        """Load the tenant's image archive (``docker save``): nodes without registry access
        still run custom images. It becomes the tenant's own (:mod:`..isolation.images`)."""
        archive = spec.image_archive
        assert archive is not None
        incoming = self._need(self._outgoing).parent / "images"
        target = incoming / f"{archive.sha256}.tar"
        await self._fetch(command_id, spec, archive, target, "archive")
        progress = self._pull_listener(command_id)
        try:
            if progress is not None:
                progress(PullStatus(spec.image, "loading", None, None))
            image_id = await self._node.images.load(spec, target)
        finally:
            target.unlink(missing_ok=True)
        if progress is not None:
            progress(PullStatus(spec.image, "done", None, None))
        return image_id

    async def _build_image(self, command_id: str, spec: ContainerSpec) -> str:
        """Build the image from the tenant's build context. The context is kept
        (``contexts_dir``): a migration sends it to the peer to build."""
        context = spec.build_context
        assert context is not None
        target = contexts_dir(self._need(self._outgoing)) / f"{context.sha256}.tar"
        if not target.exists():
            await self._fetch(command_id, spec, context, target, "build context")
        progress = self._pull_listener(command_id)
        if progress is not None:
            progress(PullStatus(spec.image, "building", None, None))
        image_id = await self._node.images.build(spec, target)
        if progress is not None:
            progress(PullStatus(spec.image, "done", None, None))
        return image_id

    async def _fetch(
        self, command_id: str, spec: ContainerSpec, ref: TransferRef, target: Path, what: str
    ) -> None:
        """Download an artifact the image comes from, with progress, checked."""
        files = self._need(self._files)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._node.disks.room(ref.size)
        progress = self._pull_listener(command_id)

        def downloading(done: DownloadProgress) -> None:
            if progress is not None:
                progress(PullStatus(spec.image, f"downloading {what}", done.received, done.total))

        try:
            await files.download(
                ref.url, target, sha256=ref.sha256, size=ref.size, progress=downloading
            )
        except DownloadFailed as err:
            raise ImageLoadFailed(f"{what}: {err}") from err

    async def _copy_out(self, command: Command) -> None:
        """Copy a path out of the container and upload its tar, streamed through a file."""
        assert command.files is not None
        files = self._need(self._files)
        outgoing = self._need(self._outgoing)
        tar = child(outgoing, command.id, suffix=".tar")
        outgoing.mkdir(parents=True, exist_ok=True)
        try:
            await self._runtime.copy_out(
                command.docker_name,
                container_id=command.container_id,
                path=command.files.path,
                destination=tar,
                max_bytes=self._copy_out_max,
                room=self._node.disks.room,
            )
            try:
                await files.upload(command.files.url, tar)
            except UploadFailed as err:
                raise RuntimeFailure(f"upload: {err}") from err
        finally:
            tar.unlink(missing_ok=True)

    @staticmethod
    def _need(part: _T | None) -> _T:
        if part is None:
            raise CommandRejected(errors.UNAVAILABLE, "this agent was started without it")
        return part

    async def _discard(self, spec: ContainerSpec) -> None:
        try:
            await self._node.remove(
                spec.docker_name, container_id=spec.container_id, tenant_id=spec.tenant_id
            )
        except RuntimeFailure as err:
            logger.warning("could not remove %s after a failed create: %s", spec.docker_name, err)

    def _pull_listener(self, command_id: str) -> Callable[[PullStatus], None] | None:
        listener = self._on_pull
        if listener is None:
            return None

        def report(status: PullStatus) -> None:
            listener(
                PullProgress(
                    command_id=command_id,
                    image=status.image,
                    status=status.status,
                    current=status.current,
                    total=status.total,
                )
            )

        return report

    async def _inspect(self, command: Command) -> CommandResult:
        try:
            report = await self._runtime.inspect(command.docker_name)
        except RuntimeFailure as err:
            return _failed(command, err)
        if report is None or report.container_id != command.container_id:
            return CommandResult(
                command_id=command.id,
                ok=False,
                error_code="container_not_found",
                error=f"no container {command.docker_name} for {command.container_id}",
            )
        return CommandResult(command_id=command.id, ok=True, container=report)


def _same_command(command: Command, action: str, container_id: str) -> None:
    if (command.action.value, command.container_id) != (action, container_id):
        raise CommandRejected(
            errors.INVALID_ARGUMENT, f"command id {command.id} was used for another command"
        )


def _failed(command: Command, err: RuntimeFailure) -> CommandResult:
    return CommandResult(
        command_id=command.id, ok=False, error_code=err.code, error=err.message[:_MAX_ERROR]
    )


def contexts_dir(outgoing: Path) -> Path:
    """Where build contexts are kept, beside the other transfers of the node."""
    return outgoing.parent / "contexts"
