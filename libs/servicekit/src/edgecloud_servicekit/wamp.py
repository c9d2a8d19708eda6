"""The service's one WAMP session, opened and closed by the FastAPI lifespan.

autobahn is used only here (and in the agent's uplink). The rest of a service sees
:class:`WampLink`: the procedures and subscriptions it declares up front (listed in its
``create_app``), ``call`` with an enforced timeout, and ``publish``. The link reconnects
by itself with capped, jittered backoff and re-registers everything on each join.
"""

import asyncio
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autobahn.asyncio.component import Component
from autobahn.exception import Disconnected
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions

from edgecloud_contracts import errors, uris
from edgecloud_contracts.correlation import with_request_id

from .tracing import timed_call, traced_handler

logger = logging.getLogger(__name__)

CALLEE_LOST_RETRIES = 2

Handler = Callable[..., Awaitable[Any]]


class WampError(Exception):
    """Base of every error this module raises."""


class WampUnavailable(WampError):
    """No session to the router right now."""


class WampTimeout(WampError):
    def __init__(self, uri: str, timeout: float) -> None:
        super().__init__(f"call to {uri} timed out after {timeout:g}s")
        self.uri = uri
        self.timeout = timeout


class WampCalleeLost(WampUnavailable):
    """The callee's session ended before it answered (a replica died mid-call): the call may
    or may not have run. ``call`` repeats idempotent calls on this by itself."""


class WampCallError(WampError):
    """The callee answered with a WAMP error URI."""

    def __init__(self, uri: str, error: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        super().__init__(f"{uri} failed: {error} {list(args)}")
        self.uri = uri
        self.error = error
        self.args_ = list(args)
        self.kwargs = kwargs


@dataclass(frozen=True, slots=True)
class Procedure:
    """A procedure the service registers; replicas share it round-robin."""

    uri: str
    handler: Handler
    with_details: bool = False
    invoke: str = "roundrobin"


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    handler: Handler
    match: str = "exact"
    with_details: bool = False


def _is_fatal(error: Exception) -> bool:
    # A refused login will not succeed by retrying; anything else (router down) will.
    return isinstance(error, ApplicationError) and error.error in (
        "wamp.error.not_authorized",
        "wamp.error.authentication_failed",
        "wamp.error.no_such_realm",
        "wamp.error.no_such_role",
    )


def _tls_endpoint(url: str, ca_file: Path | None) -> dict[str, Any]:
    """For a ``wss://`` URL: a TCP endpoint whose TLS verifies the router's certificate and
    host name against ``ca_file`` (the system's authorities when None); {} for ``ws://``."""
    parts = urlsplit(url)
    if parts.scheme != "wss":
        return {}
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    host = parts.hostname or "127.0.0.1"
    return {"endpoint": {"type": "tcp", "host": host, "port": parts.port or 443, "tls": context}}


class WampLink:
    def __init__(
        self,
        *,
        url: str,
        realm: str,
        authid: str,
        ticket: str,
        procedures: Sequence[Procedure] = (),
        subscriptions: Sequence[Subscription] = (),
        call_timeout: float = 10.0,
        serializer: str = "cbor",
        ca_file: Path | None = None,
    ) -> None:
        """``ca_file``: the authorities trusted for a ``wss://`` URL (None: the system's)."""
        self.url = url
        self.authid = authid
        self.call_timeout = call_timeout
        self._procedures = list(procedures)
        self._subscriptions = list(subscriptions)
        self._session: Any = None
        self._joined = asyncio.Event()
        self._done: asyncio.Future[Any] | None = None
        self._component = Component(
            transports=[
                {
                    "type": "websocket",
                    "url": url,
                    **_tls_endpoint(url, ca_file),
                    "serializers": [serializer],
                    "max_retries": -1,
                    "initial_retry_delay": 0.25,
                    "max_retry_delay": 5.0,
                    "retry_delay_growth": 1.5,
                    "retry_delay_jitter": 0.25,
                    "options": {
                        "autoPingInterval": 10,
                        "autoPingTimeout": 5,
                        "openHandshakeTimeout": 10,
                    },
                }
            ],
            realm=realm,
            authentication={"ticket": {"authid": authid, "ticket": ticket}},
            is_fatal=_is_fatal,
        )
        self._component.on("join", self._on_join)
        self._component.on("leave", self._on_leave)
        self._component.on("disconnect", self._on_disconnect)

    @property
    def connected(self) -> bool:
        return self._joined.is_set() and self._session is not None

    @property
    def failure(self) -> str | None:
        """Why the link gave up for good (a refused login), if it did."""
        if self._done is not None and self._done.done() and not self._done.cancelled():
            error = self._done.exception()
            return str(error) if error else "stopped"
        return None

    async def __aenter__(self) -> "WampLink":
        self._done = self._component.start(loop=asyncio.get_running_loop())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._joined.clear()
        done = self._done
        if done is not None and not done.done():
            # stop() leaves the session (GOODBYE) and ends the reconnect loop.
            try:
                await asyncio.wait_for(self._component.stop(), timeout=5)
            except TimeoutError:
                logger.warning("WAMP component did not stop in time")
            if not done.done():
                done.cancel()
        self._session = None

    async def wait_joined(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._joined.wait(), timeout)
        except TimeoutError as err:
            raise WampUnavailable(f"not joined to {self.url} after {timeout:g}s") from err

    async def _on_join(self, session: Any, details: Any) -> None:
        for procedure in self._procedures:
            options = RegisterOptions(
                invoke=procedure.invoke,
                details_arg="details" if procedure.with_details else None,
            )
            handler = traced_handler(self.authid, procedure.uri, procedure.handler)
            await session.register(handler, procedure.uri, options=options)
        for subscription in self._subscriptions:
            options_s = SubscribeOptions(
                match=subscription.match,
                details_arg="details" if subscription.with_details else None,
            )
            await session.subscribe(subscription.handler, subscription.topic, options=options_s)
        self._session = session
        self._joined.set()
        logger.info("joined WAMP realm as %s (session %s)", self.authid, details.session)

    def _on_leave(self, session: Any, details: Any) -> None:
        if self._joined.is_set():
            logger.warning("left WAMP realm: %s", details.reason)
        self._joined.clear()

    def _on_disconnect(self, session: Any, was_clean: bool) -> None:
        self._joined.clear()
        self._session = None

    def _require_session(self) -> Any:
        if not self.connected:
            raise WampUnavailable(f"no WAMP session to {self.url}")
        return self._session

    async def call(
        self,
        uri: str,
        *args: Any,
        timeout: float | None = None,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Call ``uri``; the router cancels it after ``timeout`` seconds. A callee that dies
        mid-call (one replica of a shared registration) is called again, up to
        CALLEE_LOST_RETRIES times, unless the call is not ``idempotent`` (then it is the
        caller's to know whether to repeat it). Every call the platform makes carries its
        own id or is a read, so idempotent is the default."""
        for attempt in range(CALLEE_LOST_RETRIES + 1):
            try:
                return await self._call_once(uri, args, kwargs, timeout)
            except WampCalleeLost:
                if not idempotent or attempt == CALLEE_LOST_RETRIES:
                    raise
                logger.info("callee of %s went away mid-call; calling again", uri)
        raise AssertionError("unreachable")

    async def _call_once(
        self,
        uri: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        on_progress: Callable[..., None] | None = None,
    ) -> Any:
        session = self._require_session()
        limit = timeout if timeout is not None else self.call_timeout
        # Crossbar enforces whole seconds (and autobahn insists on an int).
        options = CallOptions(on_progress=on_progress, timeout=max(1, math.ceil(limit)))
        with timed_call(self.authid, uri), _translated(uri, limit):
            try:
                # The router enforces the timeout; ours is a backstop for a transport that
                # died without a word (an oversized message ends the socket, the call stays).
                async with asyncio.timeout(limit + 1):
                    return await session.call(
                        uri, *args, options=options, **with_request_id(uri, kwargs)
                    )
            except TimeoutError as err:
                raise WampTimeout(uri, limit) from err

    async def call_streaming(
        self,
        uri: str,
        *args: Any,
        on_progress: Callable[..., None],
        timeout: float,
        **kwargs: Any,
    ) -> Any:
        """Call ``uri`` for progressive results: ``on_progress`` gets each one's arguments
        as it comes, then the final result is returned. Cancelling the awaiting task
        cancels the call at the callee (the router passes the cancel on)."""
        return await self._call_once(uri, args, kwargs, timeout, on_progress=on_progress)

    async def router_answers(self, timeout: float = 2.0) -> bool:
        """Whether the router answers a call now: a frozen router keeps its connections open,
        so only a round trip tells."""
        try:
            await self.call(uris.META_SESSION_COUNT, timeout=timeout)
        except WampError:
            return False
        return True

    async def is_registered(self, uri: str) -> bool:
        """Whether some session has registered ``uri`` now (e.g. a device is connected)."""
        return await self.call("wamp.registration.match", uri, timeout=5) is not None

    async def publish(
        self, topic: str, *args: Any, acknowledge: bool = False, **kwargs: Any
    ) -> None:
        session = self._require_session()
        options = PublishOptions(acknowledge=acknowledge, exclude_me=False)
        try:
            result = session.publish(topic, *args, options=options, **kwargs)
            if acknowledge and result is not None:
                await asyncio.wait_for(result, self.call_timeout)
        except TimeoutError as err:
            raise WampTimeout(topic, self.call_timeout) from err
        except (TransportLost, Disconnected) as err:
            raise WampUnavailable(f"transport lost during publish to {topic}") from err


@contextmanager
def _translated(uri: str, timeout: float) -> Iterator[None]:
    """autobahn's errors of a call to ``uri`` as ours."""
    try:
        yield
    except ApplicationError as err:
        if errors.callee_lost(err.error, err.args):
            raise WampCalleeLost(f"the callee of {uri} went away mid-call") from err
        if err.error == errors.CANCELED:
            raise WampTimeout(uri, timeout) from err
        raise WampCallError(uri, err.error, err.args, err.kwargs) from err
    except (TransportLost, Disconnected) as err:
        # Disconnected: the socket closed before the session heard of it (a call made in
        # that instant fails at once, not with TransportLost).
        raise WampUnavailable(f"transport lost during call to {uri}") from err
