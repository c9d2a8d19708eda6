"""Request body limits: a route takes at most the service's ``max_body_bytes`` unless it sets
its own ``max_body_size`` (uploads do), and a larger body is refused with 413
``payload_too_large`` before the route acts on it.

FastAPI's app-wide ``max_body_size`` is not used for the default: it checks a declared
Content-Length only when the route reads its body, so a route that ignores its body (a
DELETE) would have run before the 413 replaced its answer, and that answer is plain text.
Here two pieces share the work:

- :class:`BodyLimit` (middleware) watches the body as the route reads it: a declared
  length over the limit is refused before the first byte is read, a chunked body where it
  crosses the limit;
- :func:`body_within_limit` (a dependency of every route) refuses a declared length over
  the limit before the route runs, for the routes that never read their body.

A route with its own ``max_body_size`` is left to FastAPI, which marks the request's scope
with that limit once the request reaches the route.
"""

from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import PayloadTooLarge

# The rest of an oversized body is not worth reading: the connection ends with the answer.
CLOSE = {"Connection": "close"}


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> str:
    return f"the request body is over this route's limit of {limit} bytes"


class BodyLimit:
    """ASGI middleware holding a route without a limit of its own to ``default_bytes``, as
    the route reads the body."""

    def __init__(self, app: ASGIApp, *, default_bytes: int) -> None:
        self.app = app
        self.default_bytes = default_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        limit = self.default_bytes
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if scope.get(MAX_BODY_SIZE_SCOPE_KEY) is not None:
                return await receive()  # the route's own limit: FastAPI's to enforce
            if declared is not None and declared > limit:
                raise HTTPException(413, detail=_too_large(limit), headers=CLOSE)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException: FastAPI passes it on from reading the body, and
                    # the problem handlers answer it as payload_too_large.
                    raise HTTPException(413, detail=_too_large(limit), headers=CLOSE)
            return message

        await self.app(scope, receive_within_limit, send)


async def body_within_limit(connection: HTTPConnection) -> None:
    """Refuse a declared body over the route's limit before the route runs (a route that
    reads its body has been refused while reading it, by :class:`BodyLimit`). An
    HTTPConnection, not a Request: WebSocket routes get this dependency too."""
    declared = _declared_length(connection.scope)
    if declared is None:
        return
    own = connection.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    limit = own if isinstance(own, int) else connection.app.state.settings.max_body_bytes
    if declared > limit:
        raise PayloadTooLarge(_too_large(limit), headers=CLOSE, limit=limit)
