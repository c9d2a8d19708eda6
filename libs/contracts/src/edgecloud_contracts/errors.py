"""WAMP error URIs. A caller matches on these, never on message text."""

from collections.abc import Sequence
from typing import Final

INVALID_ARGUMENT: Final = "edge.error.invalid_argument"
PAYLOAD_TOO_LARGE: Final = "edge.error.payload_too_large"
NOT_AUTHORIZED: Final = "edge.error.not_authorized"
UNAVAILABLE: Final = "edge.error.unavailable"
NOT_FOUND: Final = "edge.error.not_found"
FAILED_PRECONDITION: Final = "edge.error.failed_precondition"
"""The request is valid but the device is not in a state to carry it out."""
TOO_MANY_REQUESTS: Final = "edge.error.too_many_requests"
"""More of these than the caller is allowed in a while: ask again later."""
FULL_HEARTBEAT_NEEDED: Final = "edge.error.full_heartbeat_needed"
"""A compact beat from a device the registry has no full heartbeat of yet."""

# Authentication refusals returned by the registry's authenticator.
AUTH_UNKNOWN_DEVICE: Final = "edge.error.auth.unknown_device"
AUTH_REVOKED: Final = "edge.error.auth.revoked"
AUTH_ENROLMENT_INVALID: Final = "edge.error.auth.enrolment_invalid"
AUTH_KEY_MISMATCH: Final = "edge.error.auth.key_mismatch"

# The router's own: a call whose callee's session ended before it answered (a service
# replica was killed, a node dropped off). Crossbar gives the same URI for a call that
# timed out, and tells the two apart only by its message, so this one match on text is
# unavoidable: a lost callee is worth calling again at once (another replica answers),
# a timeout is not.
CANCELED: Final = "wamp.error.canceled"
CALLEE_LOST_MESSAGE: Final = "callee disconnected from in-flight request"


def callee_lost(error: str, args: Sequence[object]) -> bool:
    """Whether a WAMP error says the callee went away mid-call (see CALLEE_LOST_MESSAGE)."""
    return error == CANCELED and bool(args) and args[0] == CALLEE_LOST_MESSAGE
