"""Following one user action across processes, and timing the WAMP hops it takes.

- :class:`RequestIdMiddleware` adopts a caller's ``X-Request-ID`` (or makes one) for each
  HTTP request and WebSocket, and returns it in the response;
- :func:`traced_handler` wraps a WAMP procedure: it takes the caller's id out of the
  arguments, makes it current while the handler runs, and times the invocation;
- :func:`timed_call` times an outgoing WAMP call by procedure family and outcome.

The id's rules and the context variable holding it are in ``edgecloud_contracts.correlation``
(the agent follows the same rules).
"""

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from autobahn.wamp.exception import ApplicationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgecloud_contracts import errors
from edgecloud_contracts.correlation import (
    REQUEST_ID_HEADER,
    adopt_request_id,
    bound_request_id,
    is_valid_request_id,
    new_request_id,
    pop_request_id,
)

from .metrics import WAMP_CALL_SECONDS, WAMP_INVOCATION_SECONDS, error_outcome, procedure_family

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """ASGI middleware: the request's id from its ``X-Request-ID`` header when that is a
    valid one, else a new one; current for the whole request and sent back with the answer.

    The id is left current when the request ends: uvicorn runs each request in a task of
    its own, and its log line of an exception that escaped the app then carries the id too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = offered if is_valid_request_id(offered) else new_request_id()
        adopt_request_id(request_id)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def _call_outcome(err: BaseException) -> str:
    # Imported here: wamp.py imports this module.
    from .wamp import WampCalleeLost, WampCallError, WampTimeout, WampUnavailable

    if isinstance(err, WampCallError):
        return error_outcome(err.error)
    if isinstance(err, WampTimeout):
        return "timeout"
    if isinstance(err, WampCalleeLost):
        return "callee_lost"
    if isinstance(err, WampUnavailable):
        return "unavailable"
    if isinstance(err, asyncio.CancelledError):
        return "cancelled"
    return "error"


@contextmanager
def timed_call(service: str, uri: str) -> Iterator[None]:
    """Time one attempt of a call to ``uri`` (the block raises our WampError subclasses)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as err:
        outcome = _call_outcome(err)
        raise
    finally:
        WAMP_CALL_SECONDS.labels(service, procedure_family(uri), outcome).observe(
            time.perf_counter() - started
        )


def traced_handler(service: str, uri: str, handler: Any) -> Any:
    """``handler`` as registered for ``uri``: the caller's request id (a reserved keyword
    argument) is taken out and made current while it runs, and the invocation is timed by
    its outcome (``ok``, the last part of the error URI it raised, or ``runtime_error``).
    Arguments that do not fit the handler's signature are refused with
    ``edge.error.invalid_argument`` before it runs (not a Python TypeError the caller would
    see as ``wamp.error.runtime_error``)."""
    family = procedure_family(uri)
    signature = inspect.signature(handler)

    @functools.wraps(handler)
    async def invoke(*args: Any, **kwargs: Any) -> Any:
        request_id = pop_request_id(kwargs)
        started = time.perf_counter()
        outcome = "ok"
        try:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as err:
                raise ApplicationError(errors.INVALID_ARGUMENT, f"{uri}: {err}") from err
            with bound_request_id(request_id):
                return await handler(*args, **kwargs)
        except ApplicationError as err:
            outcome = error_outcome(err.error)
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "runtime_error"  # what the caller gets for any other exception
            raise
        finally:
            WAMP_INVOCATION_SECONDS.labels(service, family, outcome).observe(
                time.perf_counter() - started
            )

    return invoke
