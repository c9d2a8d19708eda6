"""Each container's /app as a filesystem of its own size: a full /app is its own problem.

A container's root is read-only and its /tmp a small tmpfs in its memory; its one writable
place that lasts is its application volume. As a plain Docker volume that could fill the
node's disk. Here it is an ext4 filesystem in a file of exactly ``limits.disk`` bytes,
allocated when the container is created (so the node's space is set aside then, and a
create that would eat into the node's reserve is refused), mounted by the agent
(``nodev,nosuid``), and handed to Docker as a named volume that binds the filesystem's
``app`` directory. Writes past the size fail inside the container with ENOSPC.

Fail closed: ``app`` exists only inside the mounted filesystem. After a reboot, until the
agent has mounted the disk again, Docker cannot start the container at all, rather than let
it write to the node's own disk.

Layout under the state directory: ``disks/<container id>.img`` and its mount point
``disks/<container id>/``.
"""

import asyncio
import logging
import os
from pathlib import Path

from ..runtime.docker import DockerRuntime
from ..runtime.errors import DiskReserveReached, RuntimeFailure
from ..runtime.hardening import app_volume
from . import commands
from .node_paths import child

logger = logging.getLogger(__name__)

APP = "app"
MOUNT_OPTIONS = "loop,nodev,nosuid,noatime"
COMMAND_TIMEOUT_S = 60.0


class DiskError(RuntimeFailure):
    code = "disk_error"


class AppDisks:
    def __init__(self, *, runtime: DockerRuntime, root: Path, reserve_bytes: int) -> None:
        self._runtime = runtime
        self._root = root
        self._reserve = reserve_bytes
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def images(self) -> list[Path]:
        return sorted(self._root.glob("*.img"))

    def image(self, container_id: str) -> Path:
        return child(self._root, container_id, suffix=".img")

    def mount_point(self, container_id: str) -> Path:
        return child(self._root, container_id)

    def app_root(self, container_id: str) -> Path | None:
        """The container's /app as the node sees it, while its disk is mounted."""
        root = self.mount_point(container_id) / APP
        return root if _is_mount(self.mount_point(container_id)) else None

    def room(self, size: int) -> None:
        """Raise :class:`DiskReserveReached` unless ``size`` more bytes leave the node its
        reserve (on the filesystem holding the disks: the state directory's)."""
        stat = os.statvfs(self._root)
        free = stat.f_bavail * stat.f_frsize
        if free - size < self._reserve:
            raise DiskReserveReached(
                f"{size} bytes would leave this node {max(free - size, 0)} bytes free,"
                f" below its reserve of {self._reserve}"
            )

    async def provide(self, container_id: str, size: int, *, labels: dict[str, str]) -> str:
        """The container's /app volume on a disk of ``size`` bytes, made (or found again,
        for a repeated create) and mounted; the volume's name."""
        image, mount_point = self.image(container_id), self.mount_point(container_id)
        if not image.exists():
            self.room(size)
            await asyncio.to_thread(_allocate, image, size)
            try:
                await _command("mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                               "lazy_itable_init=1,lazy_journal_init=1", str(image))  # fmt: skip
            except DiskError:
                image.unlink(missing_ok=True)
                raise
        await self._mount(image, mount_point)
        app = mount_point / APP
        if not app.is_dir():
            app.mkdir(mode=0o755)
        name = app_volume(container_id)
        await self._runtime.create_volume(
            name, options={"type": "none", "o": "bind", "device": str(app)}, labels=labels
        )
        return name

    async def release(self, container_id: str) -> None:
        """Unmount and delete the container's disk (its volume and container are gone)."""
        image, mount_point = self.image(container_id), self.mount_point(container_id)
        if _is_mount(mount_point):
            try:
                await _command("umount", str(mount_point))
            except DiskError:
                # Still held (Docker letting go of its bind): detach now, freed when unused.
                await _command("umount", "--lazy", str(mount_point))
        if mount_point.is_dir() and not _is_mount(mount_point):
            mount_point.rmdir()
        image.unlink(missing_ok=True)

    async def remount(self, keep: set[str]) -> None:
        """At start: mount the disks of the containers the node still has, release the
        rest (left by a crash between a create's steps)."""
        for image in self.images():
            container_id = image.stem
            try:
                if container_id in keep:
                    await self._mount(image, self.mount_point(container_id))
                else:
                    await self.release(container_id)
            except DiskError as err:
                logger.error("the /app disk of %s: %s", container_id, err.message)

    async def _mount(self, image: Path, mount_point: Path) -> None:
        if _is_mount(mount_point):
            return
        await asyncio.to_thread(mount_point.mkdir, mode=0o700, exist_ok=True)
        await _command("mount", "-o", MOUNT_OPTIONS, str(image), str(mount_point))


def _allocate(image: Path, size: int) -> None:
    """A file of ``size`` bytes whose blocks are set aside now (not a sparse promise)."""
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        os.close(fd)
        image.unlink(missing_ok=True)
        raise
    os.close(fd)


def _is_mount(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


async def _command(*argv: str) -> None:
    await commands.run(list(argv), error=DiskError, timeout_s=COMMAND_TIMEOUT_S)
