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

# Device -> cloud procedures (the router lets devices call exactly these).
HEARTBEAT: Final = "edge.registry.heartbeat"

# Router -> registry: the dynamic authenticator for device credentials.
AUTHENTICATE_DEVICE: Final = "edge.registry.authenticate_device"

# Events.
EVENT_DEVICE_STATUS: Final = "edge.event.device.status"

# Router meta events the registry follows for liveness.
META_SESSION_ON_JOIN: Final = "wamp.session.on_join"
META_SESSION_ON_LEAVE: Final = "wamp.session.on_leave"
META_SESSION_KILL_BY_AUTHID: Final = "wamp.session.kill_by_authid"

DEVICE_PREFIX: Final = "edge.device."


def device_procedure(key: str, operation: str) -> str:
    """URI of ``operation`` on the device ``key`` (registered by its agent)."""
    return f"{DEVICE_PREFIX}{key}.{operation}"
