"""Authorization of device sessions, run inside the Crossbar router worker.

Crossbar's static permissions cannot say "a device may use only its own namespace",
so the ``device`` role delegates every decision to this stateless authorizer. It lives
in the router itself (not in a service) so that device traffic never waits on, or fails
with, a service that happens to be restarting.

Crossbar caches decisions by (realm, role, URI, action) -- without the authid -- so a
decision may be cached only when it is the same for every device.
"""

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import inlineCallbacks

AUTHORIZE_DEVICE = "edge.router.authorize_device"
DEVICE_PREFIX = "edge.device."
INVALID_ARGUMENT = "edge.error.invalid_argument"  # edgecloud_contracts.errors

# Cloud procedures that any device may call: keep in step with edgecloud_contracts.uris.
DEVICE_CALLABLE = frozenset(
    {
        "edge.registry.heartbeat",
        "edge.registry.beat",
        "edge.orchestrator.report",
        "edge.orchestrator.log_slot",
        "edge.orchestrator.log_stream",
        "edge.orchestrator.placements",
        "edge.migration.request",
        "edge.migration.report",
    }
)


def decide(authid: str, uri: str, action: str) -> dict:
    """Return Crossbar's authorization answer for one device action."""
    own_namespace = f"{DEVICE_PREFIX}{authid}."
    if uri.startswith(own_namespace) and action in ("register", "publish", "subscribe"):
        return {"allow": True, "disclose": True, "cache": False}
    if action == "call" and uri in DEVICE_CALLABLE:
        return {"allow": True, "disclose": True, "cache": True}
    # A denial outside the device namespace does not depend on who asks.
    return {"allow": False, "cache": not uri.startswith(DEVICE_PREFIX)}


class DevicePolicy(ApplicationSession):
    @inlineCallbacks
    def onJoin(self, details):
        yield self.register(self.authorize, AUTHORIZE_DEVICE)

    def authorize(self, session=None, uri=None, action=None, options=None, *more, **extra):
        # Only the router calls this as meant; services may call it too (their role allows
        # every URI), and anything else they send is refused with an error URI.
        if more or extra or not isinstance(session, dict):
            raise ApplicationError(INVALID_ARGUMENT, "expected (session, uri, action, options)")
        authid = session.get("authid")
        if not isinstance(uri, str) or not isinstance(action, str):
            raise ApplicationError(INVALID_ARGUMENT, "uri and action must be strings")
        return decide(authid if isinstance(authid, str) else "", uri, action)
