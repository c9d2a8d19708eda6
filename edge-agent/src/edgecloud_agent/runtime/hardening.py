"""The Docker create body of a tenant container: the spec, with the node's hardening on top.

Whatever the spec says, a tenant container gets no privileges, no capabilities, no way to
gain new ones, hard memory/CPU/PID limits (PIDs capped by the node's operator), a read-only
root with a small no-exec /tmp, nothing of the host mounted (so never the Docker socket), no
device but the declared interfaces it holds (each checked by :mod:`.devices`: a character
device of the node's /dev, never one that reaches the node's memory, kernel or disks), no
IPv6, and only what the node provisioned for it (:class:`Placement`, made by
``edgecloud_agent.isolation``): the image by the ID recorded for its tenant, its tenant's
own network (or none), its own /app volume of a fixed size, its broker login, and ports
only from the operator's range. Every path that creates a container goes through
:func:`create_body`.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgecloud_contracts.containers import ContainerSpec

from .devices import device_entries
from .errors import PolicyRefused, PortRefused

# Docker's own name grammar; anything else must not reach a URL path of the Engine API.
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")

LABEL_MANAGED = "edgecloud.managed"
LABEL_CONTAINER_ID = "edgecloud.container_id"
LABEL_TENANT = "edgecloud.tenant"
LABEL_OWNER = "edgecloud.owner"
LABEL_AUTO_REMOVE = "edgecloud.auto_remove"
"""Job-style: the agent removes it when it ends (after shipping its logs), not Docker."""
LABEL_IMAGE = "edgecloud.image"
LABEL_GENERATION = "edgecloud.generation"
"""The placement the copy was created for (ContainerSpec.generation)."""
"""The image as the tenant named it: Docker only knows the ID the container was made from."""

APP_DIR = "/app"

TMPFS_OPTIONS = "rw,noexec,nosuid,size=64m"
LOG_MAX_SIZE = "10m"
LOG_MAX_FILE = "3"


@dataclass(frozen=True, slots=True)
class ContainerPolicy:
    """What the node's operator allows tenant containers (agent settings)."""

    pids_per_container: int = 1024
    ports: tuple[int, int] | None = None
    """The range tenants may publish container ports from; None: none at all."""

    def check(self, spec: ContainerSpec) -> None:
        """Raise :class:`PolicyRefused` for a spec this node will not run (the cloud checks
        the same before sending; a node never trusts that it did)."""
        if spec.limits.pids > self.pids_per_container:
            raise PolicyRefused(
                f"{spec.limits.pids} PIDs: this node allows {self.pids_per_container} at most"
            )
        for port in spec.ports:
            if self.ports is None or not self.ports[0] <= port.host <= self.ports[1]:
                allowed = "none" if self.ports is None else f"{self.ports[0]}-{self.ports[1]}"
                raise PortRefused(f"host port {port.host}: this node publishes {allowed}")


@dataclass(frozen=True, slots=True)
class Placement:
    """What the node provisioned for one container, besides its spec."""

    image_id: str
    """The image by ID (``sha256:...``): never a name another tenant's action could move."""
    network: str
    """The tenant's own Docker network, or ``none``."""
    volume: str
    """Its /app volume (a filesystem of ``limits.disk``)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The node's own variables (``EDGECLOUD_*``: the container's broker login)."""
    cgroup_parent: str = ""
    """Its tenant's cgroup, holding the tenant's share of the node ("": Docker's own)."""


def labels(spec: ContainerSpec) -> dict[str, str]:
    found = {
        LABEL_MANAGED: "true",
        LABEL_CONTAINER_ID: spec.container_id,
        LABEL_TENANT: spec.tenant_id,
        LABEL_OWNER: spec.owner,
        LABEL_IMAGE: spec.image,
        # Always set: an image's own labels would otherwise show through as the container's.
        LABEL_AUTO_REMOVE: "true" if spec.auto_remove else "false",
        LABEL_GENERATION: str(spec.generation),
    }
    return found


def app_volume(container_id: str) -> str:
    """The name of a container's application volume (made by Docker on create)."""
    return f"edgecloud-app-{container_id}"


def create_body(
    spec: ContainerSpec, policy: ContainerPolicy, placement: Placement
) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for ``spec`` under ``policy``, as placed."""
    policy.check(spec)
    memory = spec.limits.memory
    restart = "no" if spec.auto_remove else spec.restart_policy
    # The node's own variables last: a tenant's of the same name never reach Docker anyway
    # (the contract refuses them), and Docker keeps the last of a repeated name.
    env = {**spec.env, **placement.env}
    ports: dict[str, dict[str, str]] = {f"{p.container}/{p.protocol}": {} for p in spec.ports}
    bindings = {
        f"{port.container}/{port.protocol}": [{"HostIp": "", "HostPort": str(port.host)}]
        for port in spec.ports
    }
    body: dict[str, Any] = {
        "Image": placement.image_id,
        "Env": [f"{name}={value}" for name, value in env.items()],
        "ExposedPorts": ports or None,
        "Labels": labels(spec),
        "HostConfig": {
            "Privileged": False,
            "CapDrop": ["ALL"],
            "CapAdd": None,
            "SecurityOpt": ["no-new-privileges:true"],
            "Memory": memory,
            # Equal to Memory: no swap on top, so the limit is a real limit (and SD cards live).
            "MemorySwap": memory,
            "NanoCpus": round(spec.limits.cpus * 1e9),
            "PidsLimit": spec.limits.pids,
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": TMPFS_OPTIONS},
            "Binds": None,
            "Mounts": [
                {
                    "Type": "volume",
                    "Source": placement.volume,
                    "Target": APP_DIR,
                    "ReadOnly": False,
                }
            ],
            "Devices": device_entries(spec.devices) or None,
            "VolumesFrom": None,
            "CgroupParent": placement.cgroup_parent,
            "NetworkMode": placement.network,
            "PortBindings": bindings or None,
            # Tenant networks are IPv4 only: no link-local IPv6 to the node either.
            "Sysctls": {"net.ipv6.conf.all.disable_ipv6": "1"}
            if placement.network != "none"
            else None,
            "PidMode": "",
            "IpcMode": "private",
            "UTSMode": "",
            "UsernsMode": "",
            # Its own cgroup namespace: the container cannot see the node's cgroup tree.
            "CgroupnsMode": "private",
            "PublishAllPorts": False,
            "RestartPolicy": {"Name": restart, "MaximumRetryCount": 0},
            # Never Docker's auto-remove: it would take the logs with it. The agent removes
            # a finished job itself once its logs are shipped.
            "AutoRemove": False,
            "LogConfig": {
                "Type": "json-file",
                "Config": {"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILE},
            },
        },
    }
    if spec.command is not None:
        body["Cmd"] = list(spec.command)
    return body
