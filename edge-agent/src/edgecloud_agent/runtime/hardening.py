"""The Docker create body of a tenant container: the spec, with the node's hardening on top.

Whatever the spec says, a tenant container gets no privileges, no capabilities, no way to
gain new ones, hard memory/CPU/PID limits, a read-only root with a small no-exec /tmp,
nothing of the host mounted (so never the Docker socket), no device but the declared
interfaces it holds (each checked by :mod:`.devices`: a character device of the node's
/dev, never one that reaches the node's memory, kernel or disks), and the network the
node's operator chose. Its one writable place that lasts is its own application volume at
``/app`` (a Docker volume, not a host path), where deployments put the application.
Every path that creates a container goes through :func:`create_body`.
"""

import re
from dataclasses import dataclass
from typing import Any

from edgecloud_contracts.containers import ContainerSpec

from .devices import device_entries
from .errors import PolicyRefused

# Docker's own name grammar; anything else must not reach a URL path of the Engine API.
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")

LABEL_MANAGED = "edgecloud.managed"
LABEL_CONTAINER_ID = "edgecloud.container_id"
LABEL_TENANT = "edgecloud.tenant"
LABEL_OWNER = "edgecloud.owner"
LABEL_AUTO_REMOVE = "edgecloud.auto_remove"
"""Job-style: the agent removes it when it ends (after shipping its logs), not Docker."""

APP_DIR = "/app"

TMPFS_OPTIONS = "rw,noexec,nosuid,size=64m"
LOG_MAX_SIZE = "10m"
LOG_MAX_FILE = "3"


@dataclass(frozen=True, slots=True)
class ContainerPolicy:
    """What the node's operator allows tenant containers (agent settings)."""

    network: str = "bridge"
    allow_host_network: bool = False

    def check(self) -> None:
        """Raise :class:`PolicyRefused` unless the network choice is allowed."""
        if self.network == "host" and not self.allow_host_network:
            raise PolicyRefused(
                "host networking for tenant containers is off here (allow_host_network)"
            )
        # Joining another container's namespaces would put two tenants on one network stack.
        if self.network.startswith("container:"):
            raise PolicyRefused("tenant containers may not share another container's network")


def labels(spec: ContainerSpec) -> dict[str, str]:
    found = {
        LABEL_MANAGED: "true",
        LABEL_CONTAINER_ID: spec.container_id,
        LABEL_TENANT: spec.tenant_id,
        LABEL_OWNER: spec.owner,
    }
    if spec.auto_remove:
        found[LABEL_AUTO_REMOVE] = "true"
    return found


def app_volume(container_id: str) -> str:
    """The name of a container's application volume (made by Docker on create)."""
    return f"edgecloud-app-{container_id}"


def create_body(spec: ContainerSpec, policy: ContainerPolicy) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for ``spec`` under ``policy``."""
    policy.check()
    memory = spec.limits.memory
    restart = "no" if spec.auto_remove else spec.restart_policy
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{name}={value}" for name, value in spec.env.items()],
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
                    "Source": app_volume(spec.container_id),
                    "Target": APP_DIR,
                    "ReadOnly": False,
                    "VolumeOptions": {"Labels": labels(spec)},
                }
            ],
            "Devices": device_entries(spec.devices) or None,
            "VolumesFrom": None,
            "NetworkMode": policy.network,
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
