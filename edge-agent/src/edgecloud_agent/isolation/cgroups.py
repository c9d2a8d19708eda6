"""Cgroups of the agent's own above tenant containers and image builds: limits that hold
for a whole group of processes, whatever each of them asks for.

Two uses:

- **A tenant's share of the node.** Every container of a tenant is made inside the tenant's
  cgroup (Docker's ``CgroupParent``), which holds the tenant's share of the node's memory,
  CPU time and PIDs: however many containers a tenant has and whatever limits they carry,
  together they cannot take more, and the kernel, not a count in the cloud, says so.
- **An image build.** Docker's builder takes memory and CPU limits per step but no PID limit
  (a fork bomb in a ``RUN`` would take every PID of the node) and refuses security options on
  Linux; what it does take is a parent cgroup for every step's container. Each build gets one
  with the tenant's limits, removed after the build.

Supports the engine's ``cgroupfs`` driver on cgroup v1 (a directory per controller) and v2
(one directory, controllers enabled from the root). With the ``systemd`` driver the parent is
a transient slice whose limits systemd sets.
"""

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ..runtime.docker import DockerRuntime
from ..runtime.errors import PolicyRefused
from . import commands

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("pids", "memory", "cpu")
CFS_PERIOD_US = 100_000
COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class CgroupSetup:
    driver: str
    """The engine's: ``cgroupfs`` or ``systemd``."""
    version: str
    """``1`` or ``2``."""


@dataclass(frozen=True, slots=True)
class GroupLimits:
    memory: int
    cpus: float
    pids: int


def tenant_group(tenant_id: str) -> str:
    return f"edgecloud-tenant-{hashlib.sha256(tenant_id.encode()).hexdigest()[:16]}"


class Cgroups:
    """The groups, laid out as the node's engine lays out its own (asked once)."""

    def __init__(self, runtime: DockerRuntime) -> None:
        self._runtime = runtime
        self._setup: CgroupSetup | None = None

    async def setup(self) -> CgroupSetup:
        if self._setup is None:
            info = await self._runtime.info()
            self._setup = CgroupSetup(
                driver=str(info.get("CgroupDriver") or "cgroupfs"),
                version=str(info.get("CgroupVersion") or "1"),
            )
        return self._setup

    async def ensure(self, name: str, limits: GroupLimits) -> str:
        """The group ``name`` with ``limits`` (made, or its limits set again); the value
        Docker takes as a parent cgroup."""
        setup = await self.setup()
        if setup.driver == "systemd":
            unit = f"{name.replace('-', '_')}.slice"
            await _systemd_slice(unit, limits)
            return unit
        await asyncio.to_thread(_make_cgroupfs, setup.version, name, limits)
        return f"/{name}"

    async def remove(self, name: str, *, patience_s: float = 5.0) -> bool:
        """Remove the group once nothing runs in it, trying for ``patience_s`` (Docker
        removes its containers' own groups first, not always at once); whether it is gone."""
        setup = await self.setup()
        if setup.driver == "systemd":
            await _systemctl("stop", f"{name.replace('-', '_')}.slice")
            return True
        paths = _paths(setup.version, name)
        deadline = time.monotonic() + patience_s
        while True:
            left = []
            for path in reversed(paths):
                try:
                    path.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    left.append(path)
            if not left:
                return True
            paths = list(reversed(left))
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def transient(self, stem: str, limits: GroupLimits) -> AsyncIterator[str]:
        """A group of its own for the block (an image build)."""
        name = f"{stem}-{secrets.token_hex(6)}"
        parent = await self.ensure(name, limits)
        try:
            yield parent
        finally:
            if not await self.remove(name):
                logger.warning("cgroup %s left behind: still busy", name)


def _paths(version: str, name: str) -> list[Path]:
    if version == "2":
        return [CGROUP_ROOT / name]
    return [CGROUP_ROOT / controller / name for controller in V1_CONTROLLERS]


def _make_cgroupfs(version: str, name: str, limits: GroupLimits) -> None:
    quota = max(1000, round(limits.cpus * CFS_PERIOD_US))
    try:
        if version == "2":
            path = CGROUP_ROOT / name
            _enable_v2_controllers()
            path.mkdir(exist_ok=True)
            _write(path / "pids.max", limits.pids)
            _write(path / "memory.max", limits.memory)
            _write(path / "memory.swap.max", 0)
            (path / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
            return
        for path in _paths(version, name):
            path.mkdir(exist_ok=True)
        _write(CGROUP_ROOT / "pids" / name / "pids.max", limits.pids)
        _write(CGROUP_ROOT / "memory" / name / "memory.limit_in_bytes", limits.memory)
        _write(CGROUP_ROOT / "cpu" / name / "cpu.cfs_period_us", CFS_PERIOD_US)
        _write(CGROUP_ROOT / "cpu" / name / "cpu.cfs_quota_us", quota)
    except OSError as err:
        raise PolicyRefused(f"cgroup {name} could not be set up: {err}") from err


def _enable_v2_controllers() -> None:
    control = CGROUP_ROOT / "cgroup.subtree_control"
    enabled = control.read_text().split()
    for controller in ("pids", "memory", "cpu"):
        if controller not in enabled:
            control.write_text(f"+{controller}")


def _write(path: Path, value: int) -> None:
    path.write_text(str(value))


async def _systemd_slice(unit: str, limits: GroupLimits) -> None:
    quota = f"{max(1, round(limits.cpus * 100))}%"
    await _systemctl(
        "set-property", "--runtime", unit,
        f"TasksMax={limits.pids}", f"MemoryMax={limits.memory}", f"CPUQuota={quota}",
    )  # fmt: skip


async def _systemctl(*argv: str) -> None:
    await commands.run(["systemctl", *argv], error=PolicyRefused, timeout_s=COMMAND_TIMEOUT_S)
