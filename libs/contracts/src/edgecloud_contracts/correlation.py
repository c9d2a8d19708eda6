"""The request id that follows one user action through every process.

The gateway takes a caller's ``X-Request-ID`` (or makes one) and every hop passes it on:
services to services as the same HTTP header, WAMP calls as the reserved keyword argument
:data:`REQUEST_ID_KWARG` (the router passes arguments through untouched but drops custom
call options), and the orchestrator's outbox keeps it with each command for a later
delivery. In each process the current id lives in a context variable, so that every log
line written on the action's behalf carries it (:class:`RequestIdFilter`).

A callee removes the keyword before its handler sees it; a caller adds it only while an id
is current and never to the router's own ``wamp.`` procedures.
"""

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, TypeGuard

REQUEST_ID_HEADER: Final = "X-Request-ID"
REQUEST_ID_KWARG: Final = "_request_id"
LOG_FIELD: Final = "correlation_id"
"""The field of a log line that holds the id."""

MAX_REQUEST_ID_LENGTH: Final = 64
_SAFE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_REQUEST_ID_LENGTH - 1}}}")

_current: ContextVar[str | None] = ContextVar("edgecloud_request_id", default=None)


def is_valid_request_id(value: object) -> TypeGuard[str]:
    """Short and of a safe charset: an id goes into headers, log lines and the database,
    so anything else a caller sends is replaced, not passed on."""
    return isinstance(value, str) and _SAFE.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return _current.get()


@contextmanager
def bound_request_id(value: str | None) -> Iterator[None]:
    """Make ``value`` the current id inside the block; None leaves the current one."""
    if value is None:
        yield
        return
    token = _current.set(value)
    try:
        yield
    finally:
        _current.reset(token)


def adopt_request_id(value: str) -> None:
    """Make ``value`` the current id for the rest of this task (its context is its own)."""
    _current.set(value)


def with_request_id(uri: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a call to ``uri``, with the current id if there is one."""
    request_id = _current.get()
    if request_id is None or uri.startswith("wamp."):
        return kwargs
    return {**kwargs, REQUEST_ID_KWARG: request_id}


def pop_request_id(kwargs: dict[str, Any]) -> str | None:
    """Remove the id from an invocation's keyword arguments; the id if it was a valid one."""
    value = kwargs.pop(REQUEST_ID_KWARG, None)
    return value if is_valid_request_id(value) else None


class RequestIdFilter(logging.Filter):
    """Put the current request id on each record (as ``correlation_id``), when there is
    one. Installed on handlers, so records of every logger get it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        if request_id is not None and not hasattr(record, LOG_FIELD):
            setattr(record, LOG_FIELD, request_id)
        return True
