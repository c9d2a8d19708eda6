"""A cgroup of its own for each image build, with the tenant's limits on it.

Docker's builder takes memory and CPU limits per step but no PID limit (a fork bomb in a
``RUN`` would take every PID of the node), and refuses security options on Linux. What it
does take is a parent cgroup: every step's container is made inside it, so limits set on the
parent hold for the whole build, whatever its steps do. The agent makes that parent before
the build (PIDs, memory, CPU) and removes it after.

Supports the engine's ``cgroupfs`` driver on cgroup v1 (a directory per controller) and v2
(one directory, controllers enabled from the root). With the ``systemd`` driver the parent is
a transient slice whose limits systemd sets.
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from edgecloud_contracts.containers import Limits

from ..runtime.errors import PolicyRefused

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("pids", "memory", "cpu")
CFS_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class CgroupSetup:
    driver: str
    """The engine's: ``cgroupfs`` or ``systemd``."""
    version: str
    """``1`` or ``2``."""


@contextlib.asynccontextmanager
async def build_parent(setup: CgroupSetup, limits: Limits) -> AsyncIterator[str]:
    """A parent cgroup holding ``limits`` for the block; its name for ``cgroupparent``."""
    name = f"edgecloud-build-{secrets.token_hex(6)}"
    if setup.driver == "systemd":
        slice_name = f"{name.replace('-', '_')}.slice"
        await _systemd_slice(slice_name, limits)
        try:
            yield slice_name
        finally:
            await _systemctl("stop", slice_name)
        return
    made = await asyncio.to_thread(_make_cgroupfs, setup.version, name, limits)
    try:
        yield f"/{name}"
    finally:
        await _remove(made)


def _make_cgroupfs(version: str, name: str, limits: Limits) -> list[Path]:
    quota = max(1000, round(limits.cpus * CFS_PERIOD_US))
    made: list[Path] = []
    try:
        if version == "2":
            path = CGROUP_ROOT / name
            _enable_v2_controllers()
            path.mkdir()
            made.append(path)
            _write(path / "pids.max", limits.pids)
            _write(path / "memory.max", limits.memory)
            _write(path / "memory.swap.max", 0)
            (path / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
            return made
        for controller in V1_CONTROLLERS:
            path = CGROUP_ROOT / controller / name
            path.mkdir()
            made.append(path)
        _write(CGROUP_ROOT / "pids" / name / "pids.max", limits.pids)
        _write(CGROUP_ROOT / "memory" / name / "memory.limit_in_bytes", limits.memory)
        _write(CGROUP_ROOT / "cpu" / name / "cpu.cfs_period_us", CFS_PERIOD_US)
        _write(CGROUP_ROOT / "cpu" / name / "cpu.cfs_quota_us", quota)
    except OSError as err:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise PolicyRefused(f"a build needs a cgroup of its own and got none: {err}") from err
    return made


def _enable_v2_controllers() -> None:
    control = CGROUP_ROOT / "cgroup.subtree_control"
    enabled = control.read_text().split()
    for controller in ("pids", "memory", "cpu"):
        if controller not in enabled:
            control.write_text(f"+{controller}")


def _write(path: Path, value: int) -> None:
    path.write_text(str(value))


async def _remove(made: list[Path]) -> None:
    """Remove the build's cgroups (Docker removes the steps' own first; give it a moment)."""
    for _ in range(50):
        left = []
        for path in reversed(made):
            try:
                path.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                left.append(path)
        if not left:
            return
        made = list(reversed(left))
        await asyncio.sleep(0.1)
    logger.warning("build cgroups left behind: %s", ", ".join(map(str, made)))


async def _systemd_slice(name: str, limits: Limits) -> None:
    quota = f"{max(1, round(limits.cpus * 100))}%"
    await _systemctl(
        "set-property", "--runtime", name,
        f"TasksMax={limits.pids}", f"MemoryMax={limits.memory}", f"CPUQuota={quota}",
    )  # fmt: skip


async def _systemctl(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "systemctl", *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        raise PolicyRefused(f"systemctl {' '.join(argv[:2])}: {err.decode(errors='replace')[:300]}")
