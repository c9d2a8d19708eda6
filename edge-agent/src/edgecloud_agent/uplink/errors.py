"""Errors of the uplink to the cloud.

UplinkError
├── NotConnected     no session right now (the link is down or still joining)
├── CallTimeout      the call got no answer in time
├── CalleeLost       the cloud's replica answering it went away mid-call (called again)
├── CallFailed       the cloud answered with a WAMP error URI
└── LoginRefused     the router refused this node's credential (not retried)

CommandRejected       raised by a procedure handler to answer its caller with an error URI
"""

from typing import Any


class UplinkError(Exception):
    pass


class NotConnected(UplinkError):
    pass


class CallTimeout(UplinkError):
    def __init__(self, uri: str, timeout: float) -> None:
        super().__init__(f"{uri}: no answer after {timeout:g}s")
        self.uri = uri


class CalleeLost(UplinkError):
    """The service replica that took the call died before answering; not the link's fault."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"{uri}: the cloud's callee went away mid-call")
        self.uri = uri


class CallFailed(UplinkError):
    def __init__(self, uri: str, error: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        super().__init__(f"{uri}: {error} {args}")
        self.uri = uri
        self.error = error
        self.error_args = args
        self.error_kwargs = kwargs


class LoginRefused(UplinkError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"login refused: {reason}: {message}")
        self.reason = reason
        self.message = message


class CommandRejected(Exception):
    """A handler registered through the uplink refuses a call: the caller gets ``uri``
    (one of :mod:`edgecloud_contracts.errors`) with ``message`` as its argument."""

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(f"{uri}: {message}")
        self.uri = uri
        self.message = message
