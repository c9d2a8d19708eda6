"""The processes of a simulated node: its Docker engine, its Mosquitto broker, its agent.

Each runs in the node's network namespace through ``nsenter --net`` (not ``ip netns exec``,
which remounts /sys and leaves dockerd without its cgroups), in a session of its own, logging
to a file in the node's directory. They are found again through the namespace, not through a
pid remembered here, so any process (a later CLI call, a test's finalizer) can stop them.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from edgecloud_agent.broker.setup import Listener, init_store, node_config
from infra.testbed.network import TestbedError, ip, nsenter, run

ENGINE_FLAGS = ["--shutdown-timeout=2"]
"""Docker's own defaults otherwise (the ``docker0`` bridge, iptables, IP forwarding), as on
a real node: tenant networks and every attack through them run on the production network."""


@dataclass(frozen=True)
class NodeProcess:
    pid: int
    cmdline: tuple[str, ...]

    @property
    def role(self) -> str:
        """dockerd, containerd, mosquitto, agent or other (what the process runs)."""
        words = [Path(word).name for word in self.cmdline[:3]]
        if "edgecloud_agent" in self.cmdline:
            return "agent"
        for role in ("dockerd", "containerd", "mosquitto"):
            if role in words:
                return role
        return "other"


def alive(pid: int) -> bool:
    try:
        # A zombie still answers kill(pid, 0): only the state field tells it has ended.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes(netns: str, roles: Iterable[str] | None = None) -> list[NodeProcess]:
    """The live processes whose network namespace is ``netns`` (optionally of some roles)."""
    found = []
    for word in ip("netns", "pids", netns, check=False).split():
        try:
            raw = Path(f"/proc/{word}/cmdline").read_bytes()
        except OSError:
            continue
        process = NodeProcess(int(word), tuple(raw.decode(errors="replace").split("\0")[:-1]))
        if alive(process.pid) and (roles is None or process.role in roles):
            found.append(process)
    return found


def terminate(pids: Sequence[int], *, timeout: float) -> list[int]:
    """SIGTERM, then SIGKILL whatever is still alive after ``timeout``; return the killed."""
    for pid, signum in ((p, s) for p in pids for s in (signal.SIGCONT, signal.SIGTERM)):
        _signal(pid, signum)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    # Even SIGKILL takes a moment (a process in uninterruptible sleep finishes its call first).
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed


def _signal(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def spawn(
    argv: Sequence[str],
    *,
    netns: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> "subprocess.Popen[bytes]":
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*nsenter(netns), *argv],
            env=None if env is None else dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            # Its own session: a Ctrl-C meant for the CLI does not reach the node's daemons.
            start_new_session=True,
        )


def wait_ready(
    ready: Callable[[], bool],
    *,
    process: "subprocess.Popen[bytes]",
    log_path: Path,
    what: str,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise TestbedError(f"{what} exited with {process.returncode}", output=tail(log_path))
        if time.monotonic() > deadline:
            raise TestbedError(f"{what} not ready after {timeout}s", output=tail(log_path))
        time.sleep(0.1)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- Docker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """Where one node's Docker engine keeps its state and answers."""

    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    def argv(self) -> list[str]:
        return [
            "dockerd",
            *ENGINE_FLAGS,
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.pidfile}",
            f"--host={self.url}",
        ]

    def docker(
        self, *args: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", "-H", self.url, *args], check=check, timeout=timeout)

    def answers(self) -> bool:
        return self.socket.exists() and self.docker("info", timeout=10).returncode == 0

    def remove_containers(self) -> None:
        if not self.answers():
            return
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "--force", "--volumes", *ids, timeout=120)
        # Tenant networks and /app volumes outlive containers removed behind the agent.
        self.docker("network", "prune", "--force", timeout=60)
        self.docker("volume", "prune", "--force", timeout=60)


def save_images(images: Sequence[str], tar: Path) -> None:
    """Save images from the host's engine once, for every node to load."""
    if not tar.exists():
        partial = tar.with_suffix(".part")
        run(["docker", "save", "--output", str(partial), *images], timeout=300)
        partial.rename(tar)


# --- Mosquitto ---------------------------------------------------------------------------


def mosquitto_config(
    directory: Path, *, listeners: Sequence[tuple[str, int]], admin_secret: Path
) -> Path:
    """The node broker's configuration exactly as ``edgecloud-agent broker-setup`` writes
    it (the agent's shipped settings, the dynamic security plugin with the agent as its
    administrator, whose password goes to ``admin_secret``), listening on ``listeners``
    and storing in ``directory``."""
    store = directory / "store"
    store.mkdir(parents=True, exist_ok=True)
    identities = directory / "dynamic-security.json"
    init_store(identities, admin_secret)
    config = directory / "mosquitto.conf"
    config.write_text(
        node_config(
            listeners=[Listener(host, port) for host, port in listeners],
            store=identities,
            persistence_dir=store,
            # Started as root it would switch to `mosquitto`, who cannot write here.
            extra=["user root", "log_dest stdout"],
        )
    )
    return config


def listening(netns: str, port: int) -> bool:
    found = run(["ss", "-Hltn", f"sport = :{port}"], netns=netns, check=False).stdout
    return bool(found.strip())
