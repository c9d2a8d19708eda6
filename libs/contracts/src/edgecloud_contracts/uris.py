"""The WAMP URI catalogue: every procedure and topic of the realm, in one place.

Device-addressed procedures live under ``edge.device.<key>.`` and are registered by
that device's agent; cloud procedures are registered by services with round-robin
invocation so any number of replicas share the load.
"""

from typing import Final

REALM: Final = "edgecloud"

# Roles the router knows (infra/router/config.json).
ROLE_SERVICE: Final = "service"
ROLE_DEVICE: Final = "device"

SERVICE_AUTHIDS: Final = frozenset(
    {"gateway", "registry", "orchestrator", "storage", "migration-scheduler"}
)
"""The services' own authids (their ``service_name``): never a device's key, or revoking
that device would end the service's sessions (the router kills sessions by authid)."""

# Device -> cloud procedures (the router lets devices call exactly these:
# infra/router/edgecloud_router_policy.py keeps the same list).
HEARTBEAT: Final = "edge.registry.heartbeat"
COMPACT_BEAT: Final = "edge.registry.beat"
"""The heartbeat on the slow mesh: the last full heartbeat's description stands."""
NODE_REPORT: Final = "edge.orchestrator.report"
LOG_SLOT: Final = "edge.orchestrator.log_slot"
"""A node about to remove a finished job-style container asks where to upload its logs."""
LOG_STREAM: Final = "edge.orchestrator.log_stream"
"""A node asks where (with a grant) to ship a container's output as it runs
(edgecloud_contracts.log_segments)."""
PLACEMENTS: Final = "edge.orchestrator.placements"
"""A node that (re)joins asks which of the copies it holds are still its own
(edgecloud_contracts.placements) before it reports anything."""
MIGRATION_REQUEST: Final = "edge.migration.request"
"""A node's monitor asks for its containers to be moved (overload, predicted failure)."""
MIGRATION_REPORT: Final = "edge.migration.report"
"""A node reports a step of a migration it takes part in."""

# Router -> registry: the dynamic authenticator for device credentials.
AUTHENTICATE_DEVICE: Final = "edge.registry.authenticate_device"

# Events.
EVENT_DEVICE_STATUS: Final = "edge.event.device.status"
EVENT_DEVICE_GRANT: Final = "edge.event.device.grant"
"""A device granted to or taken from a tenant (edgecloud_contracts.events.DeviceGrantChanged):
the gateways' event streams follow it at once."""
EVENT_CONTAINER_STATUS: Final = "edge.event.container.status"
EVENT_COMMAND: Final = "edge.event.command"
EVENT_DEPLOYMENT: Final = "edge.event.deployment"
EVENT_ALERT: Final = "edge.event.alert"
"""An alert raised or cleared (edgecloud_contracts.alerts.AlertEvent)."""
EVENT_MIGRATION: Final = "edge.event.migration"

# Router meta events the registry follows for liveness.
META_SESSION_ON_JOIN: Final = "wamp.session.on_join"
META_SESSION_ON_LEAVE: Final = "wamp.session.on_leave"
META_SESSION_KILL_BY_AUTHID: Final = "wamp.session.kill_by_authid"
META_SESSION_COUNT: Final = "wamp.session.count"

DEVICE_PREFIX: Final = "edge.device."


def device_procedure(key: str, operation: str) -> str:
    """URI of ``operation`` on the device ``key`` (registered by its agent)."""
    return f"{DEVICE_PREFIX}{key}.{operation}"


CONTAINER_LOGS: Final = "container.logs"
"""A read, like inspect: asked directly, never queued."""
CONTAINER_EXEC: Final = "container.exec"
"""A command run inside a container now (edgecloud_contracts.shell), never queued."""
SHELL_OPEN: Final = "shell.open"
"""An interactive terminal in a container: output as progressive results."""
SHELL_INPUT: Final = "shell.input"
"""Keystrokes, resizes and acknowledgements for an open shell."""


def container_operation(action: str) -> str:
    """The device operation for a container command, e.g. ``container.create``."""
    return f"container.{action}"


MIGRATION_EXPECT: Final = "migration.expect"
"""Device operation: get ready to receive a container from a peer."""
MIGRATION_START: Final = "migration.start"
"""Device operation: move a container to a peer."""
MIGRATION_FIND: Final = "migration.find"
"""Device operation, level 0: reach the nodes named, from here, and say which answered."""
MIGRATION_RELAY: Final = "migration.relay"
"""Device operation, level 0: lend this node's broker to a migration between two others."""
MIGRATION_RELEASE: Final = "migration.release"
"""Device operation, level 0: the migration this node relayed has ended."""
