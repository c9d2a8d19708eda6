"""What the node is and how loaded it is, read from the operating system."""

import platform
import socket
import time
import uuid
from pathlib import Path

import psutil

from edgecloud_contracts.heartbeat import DeviceInfo, Metrics, NodePolicy
from edgecloud_contracts.identity import device_id, device_key, normalise_mac

from .. import __version__
from ..settings import AgentSettings

INFO_REFRESH_S = 60.0
PID_MAX = Path("/proc/sys/kernel/pid_max")


def kernel_pid_max() -> int:
    try:
        return int(PID_MAX.read_text())
    except (OSError, ValueError):
        return 32768


def _primary_mac() -> str:
    """The MAC of the first non-loopback interface with one, else the node id of uuid."""
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if name == "lo":
            continue
        for address in addresses:
            if address.family == psutil.AF_LINK and address.address not in (
                "",
                "00:00:00:00:00:00",
            ):
                try:
                    return normalise_mac(address.address)
                except ValueError:
                    continue
    node = uuid.getnode()
    return ":".join(f"{(node >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
        return release.get("PRETTY_NAME") or release.get("NAME") or platform.system()
    except OSError:
        return platform.system()


class SystemProbe:
    def __init__(self, settings: AgentSettings) -> None:
        self.hostname = settings.hostname or socket.gethostname()
        self.mac = normalise_mac(settings.mac) if settings.mac else _primary_mac()
        self.key = device_key(self.hostname, self.mac)
        self.id = device_id(self.hostname, self.mac)
        self._name = settings.name or self.hostname
        self._location = settings.location
        addresses = settings.peer_addresses
        self._peer_url = settings.peer_url or (addresses[0] if addresses else "")
        self._peer_urls = addresses
        self._collaboration_level = settings.collaboration_level
        self._disk_path = str(settings.disk_path)
        self._policy = NodePolicy(
            pids_per_container=settings.container_pids_max,
            pids_total=settings.node_pids or kernel_pid_max(),
            ports=settings.port_range,
            internet=settings.tenant_internet,
        )
        self._info: DeviceInfo | None = None
        self._info_read_at = float("-inf")
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; prime it

    def info(self) -> DeviceInfo:
        """What the node is; it hardly changes, so it is re-read once a minute."""
        now = time.monotonic()
        if self._info is None or now - self._info_read_at > INFO_REFRESH_S:
            self._info, self._info_read_at = self._read_info(), now
        return self._info

    def _read_info(self) -> DeviceInfo:
        return DeviceInfo(
            id=self.id,
            key=self.key,
            name=self._name,
            mac=self.mac,
            location=self._location,
            arch=platform.machine() or "unknown",
            os=_os_name()[:200],
            kernel=platform.release()[:200],
            cpu_count=psutil.cpu_count() or 1,
            memory_total=psutil.virtual_memory().total,
            disk_total=psutil.disk_usage(self._disk_path).total,
            agent_version=__version__,
            peer_url=self._peer_url,
            peer_urls=self._peer_urls,
            collaboration_level=self._collaboration_level,
            policy=self._policy,
        )

    def metrics(self) -> Metrics:
        memory = psutil.virtual_memory()
        return Metrics(
            cpu_percent=min(100.0, psutil.cpu_percent(interval=None)),
            load_1m=psutil.getloadavg()[0],
            memory_used=memory.total - memory.available,
            disk_free=psutil.disk_usage(self._disk_path).free,
        )
