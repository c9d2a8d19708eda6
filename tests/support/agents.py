"""Real agent processes for tests, each with its own identity and state directory."""

import itertools
import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecloud_contracts.identity import device_id, device_key

from .brokers import NodeBroker
from .processes import PYTHON, ManagedProcess
from .stack import Stack

_numbers = itertools.count(1)
HEARTBEAT_INTERVAL_S = 0.5


def random_mac() -> str:
    # Locally administered, unicast.
    octets = [0x02] + [secrets.randbelow(256) for _ in range(5)]
    return ":".join(f"{octet:02x}" for octet in octets)


@dataclass
class AgentHandle:
    hostname: str
    mac: str
    state_dir: Path
    process: ManagedProcess

    @property
    def key(self) -> str:
        return device_key(self.hostname, self.mac)

    @property
    def id(self) -> str:
        return device_id(self.hostname, self.mac)


class AgentFactory:
    def __init__(self, stack: Stack, workdir: Path, broker: NodeBroker | None = None) -> None:
        """``broker``: the node broker agents on this machine use (the testbed's nodes bring
        their own through ``extra_env``); None: no broker at all."""
        self._stack = stack
        self._workdir = workdir
        self._broker = broker
        self.started: list[AgentHandle] = []

    def identity(self, label: str = "node") -> tuple[str, str, Path]:
        n = next(_numbers)
        hostname = f"{label}-{n}"
        return hostname, random_mac(), self._workdir / f"agent-{n}"

    def start(
        self,
        *,
        token: str | None,
        hostname: str | None = None,
        mac: str | None = None,
        state_dir: Path | None = None,
        location: str = "test bench",
        label: str = "node",
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        extra_env: dict[str, str] | None = None,
        prefix_command: Sequence[str] = (),
    ) -> AgentHandle:
        """Start an agent; ``prefix_command`` runs it through another command first (the
        testbed's ``nsenter`` into a node's network)."""
        if hostname is None or mac is None or state_dir is None:
            hostname, mac, state_dir = self.identity(label)
        env = {
            **self._stack.env(),
            "AGENT_ROUTER_URL": self._stack.router_url,
            "AGENT_API_URL": self._stack.url("gateway"),
            "AGENT_STATE_DIR": str(state_dir),
            "AGENT_HOSTNAME": hostname,
            "AGENT_MAC": mac,
            "AGENT_LOCATION": location,
            "AGENT_HEARTBEAT_INTERVAL_S": str(heartbeat_interval_s),
            # `sleep` as PID 1 ignores SIGTERM: do not wait Docker's usual 10 s to kill it.
            "AGENT_STOP_TIMEOUT_S": "1",
            "AGENT_INVENTORY_INTERVAL_S": "1",
            "AGENT_RECONNECT_INITIAL_S": "0.2",
            "AGENT_RECONNECT_MAX_S": "2",
            # Every test node reads the one busy machine's load: moves only where a test
            # asks for them (the migration tests turn the monitor on with their thresholds).
            "AGENT_MONITOR_ENABLED": "false",
            "AGENT_LOG_JSON": "true",
        }
        if token:
            env["AGENT_ENROLMENT_TOKEN"] = token
        env |= self._broker.admin_env(state_dir) if self._broker else {"AGENT_MQTT_URL": ""}
        env.update(extra_env or {})
        process = ManagedProcess(
            f"agent {hostname}",
            [*prefix_command, str(PYTHON), "-m", "edgecloud_agent"],
            env,
            state_dir.parent / f"{state_dir.name}.log",
        ).start()
        handle = AgentHandle(hostname=hostname, mac=mac, state_dir=state_dir, process=process)
        self.started.append(handle)
        return handle

    def stop_all(self) -> None:
        for handle in self.started:
            handle.process.stop()
        for handle in self.started:
            release_disks(handle.state_dir)


def release_disks(state_dir: Path) -> None:
    """Detach the /app disks an agent mounted under its state directory (its containers
    may outlive the test; their disks then go when they do)."""
    disks = state_dir / "disks"
    if not disks.is_dir():
        return
    for mount_point in sorted(disks.iterdir()):
        if mount_point.is_dir() and os.path.ismount(mount_point):
            subprocess.run(["umount", "--lazy", str(mount_point)], check=False, timeout=30)
    for image in disks.glob("*.img"):
        image.unlink(missing_ok=True)
