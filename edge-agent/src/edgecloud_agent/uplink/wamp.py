"""The agent's WAMP session to the router, kept alive over an unreliable link.

autobahn is used only here. The uplink logs in with the node's Ed25519 key
(WAMP-cryptosign), presenting the enrolment token until the node is enrolled. Dead
links are noticed by WebSocket pings, not TCP timeouts; after any loss the uplink
reconnects with capped exponential backoff and full jitter, so a fleet that lost its
router does not come back in lockstep. With several transports (WAN first, then the LoWPAN
mesh through a neighbour) it keeps the node on the best one that works.
"""

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from autobahn.asyncio.wamp import Session
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.exception import Disconnected
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.serializer import CBORSerializer
from autobahn.wamp.types import CallOptions, ComponentConfig, PublishOptions, RegisterOptions

from edgecloud_contracts import errors, uris
from edgecloud_contracts.correlation import bound_request_id, pop_request_id, with_request_id

from . import beacon
from .errors import (
    CalleeLost,
    CallFailed,
    CallTimeout,
    CommandRejected,
    LoginRefused,
    NotConnected,
)

logger = logging.getLogger(__name__)

CALLEE_LOST_RETRIES = 2

# Refusals that retrying cannot fix (the registry said so): the node needs an operator.
# Anything else, such as the registry not being up yet, is retried.
_REFUSALS = ("edge.error.auth.",)


def _call_options(timeout: float) -> CallOptions:
    # Crossbar enforces whole seconds (and autobahn insists on an int).
    return CallOptions(timeout=max(1, math.ceil(timeout)))


def _retrieve_outcome(future: "asyncio.Future[Any]") -> None:
    # A call we stopped waiting for may still fail later; that is expected, not news.
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class Login:
    device_key: str
    private_key: bytes
    enrolment_token: str | None


class _NodeSession(Session):
    """A session that logs in with the node's key (WAMP-cryptosign).

    Done here rather than with autobahn's authenticator objects, whose module also loads
    the TLS and SCRAM libraries: several MB of memory a node has no use for.
    """

    def __init__(self, config: ComponentConfig, login: "Login") -> None:
        super().__init__(config)
        self._login = login
        self._key = CryptosignKey.from_bytes(login.private_key)

    def onConnect(self) -> None:
        extra: dict[str, str] = {"pubkey": str(self._key.public_key())}
        if self._login.enrolment_token:
            extra["enrolment_token"] = self._login.enrolment_token
        self.join(
            self.config.realm,
            authmethods=["cryptosign"],
            authid=self._login.device_key,
            authrole=uris.ROLE_DEVICE,
            authextra=extra,
        )

    def onChallenge(self, challenge: Any) -> Any:
        if challenge.method != "cryptosign":
            raise ValueError(f"unexpected authentication method {challenge.method}")
        return self._key.sign_challenge(challenge)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float
    max_s: float

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**attempt)]."""
        return random.uniform(0, min(self.max_s, self.initial_s * 2**attempt))


@dataclass(frozen=True, slots=True)
class DutyCycle:
    """Power saving: the uplink is open ``awake_s`` out of every ``awake_s + asleep_s``."""

    awake_s: float
    asleep_s: float


@dataclass(frozen=True, slots=True)
class Transport:
    """One way to the router: the WAN, or the LoWPAN mesh through a neighbour's relay."""

    link: str
    """``wan`` or ``lowpan``: what the cloud is told the node is on."""
    url: str
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 5.0
    """A link whose pings go unanswered this long is dead (TCP would take minutes)."""
    open_timeout_s: float = 10.0
    """Connecting, the WebSocket handshake and joining the realm, all together."""
    via: tuple[str, int] | None = None
    """Where the TCP connection goes instead of the URL's host and port: a neighbour's
    relay, which passes bytes on to the router. TLS still checks the certificate against
    the URL's host, and the WebSocket asks for the URL's host and path, so a ``wss://`` link
    through a relay ends at the router and the relay sees only ciphertext."""
    silence_s: float = 0.0
    """Through a relay that beacons (:mod:`.beacon`): the hop is dead after this long
    without a beacon, however idle the link (0: not watched)."""

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the TCP connection is opened to."""
        if self.via is not None:
            return self.via
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "wss" else 80)


class _Connection:
    """One WAMP session over one transport, from connecting to its end."""

    def __init__(
        self,
        transport: Transport,
        index: int,
        realm: str,
        login: Login,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.transport = transport
        self._tls = tls
        self.index = index
        """Its place in the uplink's order of preference (0 is the best)."""
        self.session = _NodeSession(ComponentConfig(realm=realm), login)
        self.ended: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._joined: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._socket: asyncio.BaseTransport | None = None
        self._watch: asyncio.Task[None] | None = None

    async def open(self) -> bool:
        """Connect and join; False (and nothing left open) when that fails in time."""
        session = self.session

        def on_join(_: Session, details: Any) -> None:
            if not self._joined.done():
                self._joined.set_result(int(details.session))

        def on_leave(_: Session, details: Any) -> None:
            self._end(str(details.reason), str(details.message or ""))

        def on_disconnect(_: Session, was_clean: bool) -> None:
            self._end("disconnected", "clean" if was_clean else "connection lost")

        session.on("join", on_join)
        session.on("leave", on_leave)
        session.on("disconnect", on_disconnect)
        url = self.transport.url
        factory = WampWebSocketClientFactory(
            lambda: session, url=url, serializers=[CBORSerializer()]
        )
        factory.setProtocolOptions(
            autoPingInterval=self.transport.ping_interval_s,
            autoPingTimeout=self.transport.ping_timeout_s,
            openHandshakeTimeout=self.transport.open_timeout_s,
            closeHandshakeTimeout=2,
        )
        host, port = self.transport.address
        parts = urlsplit(url)
        tls = (self._tls or True) if parts.scheme == "wss" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.transport.open_timeout_s):
                # The certificate is checked against the router's name even when the
                # connection goes to a relay: a relay cannot stand in for the router.
                self._socket, _ = await loop.create_connection(
                    factory,
                    host,
                    port,
                    ssl=tls,
                    server_hostname=parts.hostname if tls is not None else None,
                )
                waiting: set[asyncio.Future[Any]] = {self._joined, self.ended}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, TimeoutError) as err:
            logger.debug("cannot reach %s: %s", url, err)
            self.abort()
            return False
        if self._joined in done:
            if self.transport.via is not None and self.transport.silence_s > 0:
                self._watch = asyncio.create_task(
                    self._watch_hop(self.transport.via, self.transport.silence_s),
                    name=f"uplink-beacons-{self.transport.link}",
                )
            return True
        self.abort()
        reason, message = self.ended.result()
        if any(reason.startswith(prefix) for prefix in _REFUSALS):
            raise LoginRefused(reason, message)
        return False

    async def _watch_hop(self, relay: tuple[str, int], silence_s: float) -> None:
        try:
            await beacon.watch(relay, silence_s=silence_s)
        except OSError as err:
            logger.warning("cannot watch the %s hop's beacons: %s", self.transport.link, err)
            return
        logger.warning("no beacon from the relay at %s for %gs", self.transport.url, silence_s)
        self._end("relay silent", f"no beacon for {silence_s:g}s")
        self.abort()

    @property
    def session_id(self) -> int | None:
        return self._joined.result() if self._joined.done() else None

    def _end(self, reason: str, message: str) -> None:
        if not self.ended.done():
            self.ended.set_result((reason, message))

    async def leave(self, message: str) -> None:
        if self.session.is_attached():
            try:
                await asyncio.wait_for(self.session.leave("wamp.close.normal", message), 2)
            except (TimeoutError, TransportLost, ApplicationError) as err:
                logger.debug("leave failed: %s", err)
        self.abort()

    def abort(self) -> None:
        self._end("aborted", "")
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        if self._socket is not None:
            self._socket.close()


class Uplink:
    """The node's session to the cloud over the best link that works.

    ``transports`` are in order of preference. A lost link is noticed by WebSocket pings;
    the uplink then tries the links after it at once (failing over takes a ping timeout and
    a handshake, not a backoff), and while it is on a worse link it keeps probing the better
    ones. It goes back only after ``return_after`` probes in a row succeed, so a flapping
    link does not make it thrash, and it joins over the better link before it leaves the
    worse one, so the cloud never sees the node without a session.
    """

    def __init__(
        self,
        *,
        realm: str,
        login: Login,
        backoff: Backoff,
        url: str | None = None,
        transports: Sequence[Transport] = (),
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 5.0,
        probe_interval_s: float = 1.0,
        return_after: int = 3,
        duty_cycle: "DutyCycle | None" = None,
        on_join: Callable[[], Awaitable[None]] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: how ``wss://`` transports verify the router (None: the system's CAs)."""
        if url is not None:
            transports = [Transport("wan", url, ping_interval_s, ping_timeout_s), *transports]
        if not transports:
            raise ValueError("an uplink needs at least one transport")
        self.transports = list(transports)
        self._realm = realm
        self._login = login
        self._backoff = backoff
        self._probe_interval = probe_interval_s
        self._return_after = return_after
        self._duty = duty_cycle
        self._awake_until = 0.0
        self._on_join = on_join
        self._tls = tls
        self._current: _Connection | None = None
        self._session: Session | None = None
        self._joined = asyncio.Event()
        self._bulk_ok = asyncio.Event()
        self._bulk_ok.set()
        self._beat_acknowledged = asyncio.Event()
        self._stopping = False
        self.sessions_joined = 0

    @property
    def url(self) -> str:
        current = self._current
        return current.transport.url if current is not None else self.transports[0].url

    @property
    def connected(self) -> bool:
        return self._joined.is_set()

    @property
    def link(self) -> str:
        current = self._current
        return current.transport.link if current is not None else self.transports[0].link

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._joined.wait(), timeout)

    @property
    def next_contact_at(self) -> datetime | None:
        """On a duty cycle: when the uplink, closed to save power, opens again."""
        if self._duty is None:
            return None
        return datetime.now(UTC) + timedelta(
            seconds=max(0.0, self._awake_until - time.monotonic()) + self._duty.asleep_s
        )

    def beat_unanswered(self) -> None:
        """A heartbeat got no answer. On the slow mesh, where pings are rare to save bytes,
        that is taken as the link's death (on the WAN, pings decide)."""
        current = self._current
        if current is not None and current.transport.link != self.transports[0].link:
            logger.warning("a heartbeat over the %s link went unanswered", current.transport.link)
            current.abort()

    def beat_acknowledged(self, session_number: int) -> None:
        """The cloud acknowledged a heartbeat sent over session ``session_number`` (counted as
        :attr:`sessions_joined`): it knows the node is on that session's link."""
        if session_number == self.sessions_joined:
            self._beat_acknowledged.set()

    async def wait_bulk_ok(self) -> None:
        """Return when bulk transfers (images, artifacts, logs) may go: at once, unless the
        node is on the slow mesh, which is kept for control traffic; they resume on the WAN."""
        if not self._bulk_ok.is_set():
            logger.info("a bulk transfer waits for the WAN link")
        await self._bulk_ok.wait()

    def enrolment_done(self) -> None:
        """Stop presenting the (now used) enrolment token on later logins."""
        self._login = Login(self._login.device_key, self._login.private_key, enrolment_token=None)

    async def run(self) -> None:
        """Connect, stay connected over the best link, reconnect; returns after :meth:`close`.

        Raises :class:`LoginRefused` when the router refuses the node's credential.
        """
        order = list(range(len(self.transports)))
        attempt = 0
        while not self._stopping:
            connection = await self._join_first(order)
            if self._stopping:
                if connection is not None:
                    await connection.leave("agent stopping")
                return
            if connection is None:
                attempt += 1
                delay = self._backoff.delay(attempt)
                logger.info("no link to the router works; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                order = list(range(len(self.transports)))
                continue
            attempt = 0
            if self._duty is not None:
                self._awake_until = time.monotonic() + self._duty.awake_s
            lost = await self._serve(connection)
            if lost is None:  # closed on schedule: sleep, then the best link first
                assert self._duty is not None
                logger.info("uplink closed for %.0fs (duty cycle)", self._duty.asleep_s)
                await asyncio.sleep(self._duty.asleep_s)
                order = list(range(len(self.transports)))
                continue
            # The links after the lost one first: the lost one is likely still dead.
            order = [*range(lost + 1, len(self.transports)), *range(lost + 1)]

    async def _join_first(self, order: Sequence[int]) -> "_Connection | None":
        for index in order:
            if self._stopping:
                return None
            connection = _Connection(
                self.transports[index], index, self._realm, self._login, self._tls
            )
            if await connection.open():
                return connection
        return None

    async def _serve(self, connection: _Connection) -> int | None:
        """Keep ``connection`` (and better ones found meanwhile); the index of the link lost,
        or None when the duty cycle closed it."""
        await self._adopt(connection)
        while True:
            if self._duty is not None and time.monotonic() >= self._awake_until:
                self._joined.clear()  # nothing new starts over a link about to close
                await connection.leave("asleep until the next contact (duty cycle)")
                self._drop(connection)
                return None
            prober = (
                asyncio.create_task(self._better_than(connection.index))
                if connection.index > 0
                else None
            )
            waiting: set[asyncio.Future[Any]] = {connection.ended}
            if prober is not None:
                waiting.add(prober)
            bedtime: asyncio.Future[None] | None = None
            if self._duty is not None:
                delay = max(0.0, self._awake_until - time.monotonic())
                bedtime = asyncio.ensure_future(asyncio.sleep(delay))
                waiting.add(bedtime)
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (prober, bedtime):
                    if waiter is not None and not waiter.done():
                        waiter.cancel()
                        await asyncio.gather(waiter, return_exceptions=True)
            better = (
                prober.result()  # raises LoginRefused if the router said so
                if prober is not None and prober.done() and not prober.cancelled()
                else None
            )
            if connection.ended.done():
                reason, message = connection.ended.result()
                self._drop(connection)
                if better is not None:  # found in the same instant: carry on over it
                    connection = better
                    await self._adopt(connection)
                    continue
                if any(reason.startswith(prefix) for prefix in _REFUSALS):
                    raise LoginRefused(reason, message)
                if not self._stopping:
                    logger.warning(
                        "lost the %s link (%s): %s %s",
                        connection.transport.link,
                        connection.transport.url,
                        reason,
                        message,
                    )
                return connection.index
            if better is not None:
                old, connection = connection, better
                await self._adopt(connection)
                # The old session leaves only once the cloud has heard the node on the new
                # one: its leaving must not look like the node going away.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._beat_acknowledged.wait(), 5)
                await old.leave(f"moved to the {connection.transport.link} link")
            # Otherwise it is bedtime: the top of the loop closes the link.

    async def _better_than(self, index: int) -> _Connection:
        """Probe the links better than ``index``; a joined connection over the first that
        answers ``return_after`` probes in a row."""
        streak = [0] * index
        while True:
            for better in range(index):
                streak[better] = streak[better] + 1 if await self._reachable(better) else 0
                if streak[better] >= self._return_after:
                    connection = _Connection(
                        self.transports[better], better, self._realm, self._login, self._tls
                    )
                    if await connection.open():
                        return connection
                    streak[better] = 0
            await asyncio.sleep(self._probe_interval)

    async def _reachable(self, index: int) -> bool:
        """A TCP connection to the link's first hop (the router, or a relay) opens in time."""
        host, port = self.transports[index].address
        try:
            async with asyncio.timeout(max(0.5, self._probe_interval)):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    async def _adopt(self, connection: _Connection) -> None:
        self._current = connection
        self._beat_acknowledged.clear()
        if connection.transport.link == "lowpan":
            self._bulk_ok.clear()
        else:
            self._bulk_ok.set()
        self._session = connection.session
        self.sessions_joined += 1
        if self._on_join is not None:
            await self._on_join()
        self._joined.set()
        logger.info(
            "joined %s over the %s link as %s (session %s)",
            connection.transport.url,
            connection.transport.link,
            self._login.device_key,
            connection.session_id,
        )

    def _drop(self, connection: _Connection) -> None:
        connection.abort()
        if self._current is connection:
            self._current = None
            self._session = None
            self._joined.clear()
            self._bulk_ok.set()  # no link of ours in the way: HTTP finds its own

    async def close(self) -> None:
        """Leave the realm cleanly (the cloud marks the node offline at once)."""
        self._stopping = True
        current = self._current
        self._joined.clear()
        if current is not None:
            await current.leave("agent stopping")

    async def call(self, uri: str, *args: Any, timeout: float, **kwargs: Any) -> Any:
        """Call the cloud. Every call a node makes is idempotent (a heartbeat carries its
        sequence, a report its id), so one whose callee died mid-call (a service replica
        killed) is made again at once: another replica of the shared registration answers."""
        for attempt in range(CALLEE_LOST_RETRIES + 1):
            try:
                return await self._call_once(uri, args, kwargs, timeout)
            except CalleeLost:
                if attempt == CALLEE_LOST_RETRIES:
                    raise
                logger.info("the cloud's callee of %s went away; calling again", uri)
        raise AssertionError("unreachable")

    async def _call_once(
        self, uri: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float
    ) -> Any:
        session = self._require_session()
        connection = self._current
        try:
            pending = session.call(
                uri, *args, options=_call_options(timeout), **with_request_id(uri, kwargs)
            )
            pending.add_done_callback(_retrieve_outcome)
            # Shielded: cancelling autobahn's future makes it send CANCEL, which fails
            # on a transport that is already gone; the router times the call out anyway.
            answer = asyncio.ensure_future(asyncio.wait_for(asyncio.shield(pending), timeout + 1))
            if connection is not None:
                # A call over a link that dies fails now, not at its timeout: the caller
                # can repeat it over the next link at once.
                await asyncio.wait({answer, connection.ended}, return_when=asyncio.FIRST_COMPLETED)
                if not answer.done():
                    answer.cancel()
                    raise NotConnected(
                        f"the {connection.transport.link} link was lost during {uri}"
                    )
            return await answer
        except TimeoutError as err:
            raise CallTimeout(uri, timeout) from err
        except ApplicationError as err:
            if errors.callee_lost(err.error, err.args):
                raise CalleeLost(uri) from err
            if err.error == errors.CANCELED:
                raise CallTimeout(uri, timeout) from err
            raise CallFailed(uri, err.error, list(err.args), dict(err.kwargs)) from err
        except (TransportLost, Disconnected) as err:
            # Disconnected: the socket closed before the session heard of it (a call made
            # in that instant fails at once, not with TransportLost).
            raise NotConnected(f"link lost during {uri}") from err

    async def register(
        self, uri: str, handler: Callable[..., Awaitable[Any]], *, streams: bool = False
    ) -> None:
        """Register ``handler`` for this session; it may raise :class:`CommandRejected`.

        A handler that ``streams`` gets a ``progress`` keyword: a function sending one
        progressive result (it raises :class:`NotConnected` once the link is gone), or
        None when the caller did not ask for them. The caller's request id never reaches
        the handler: it is the current one while the handler runs (and in its log lines)."""
        session = self._require_session()

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            request_id = pop_request_id(kwargs)
            if streams:
                details = kwargs.pop("details", None)
                kwargs["progress"] = _progress_sender(getattr(details, "progress", None))
            try:
                with bound_request_id(request_id):
                    return await handler(*args, **kwargs)
            except CommandRejected as err:
                # The only exception autobahn passes to the caller intact.
                raise ApplicationError(err.uri, err.message) from err

        try:
            # "last": a device's procedures are only ever registered by the device itself,
            # so the newest registration is this session; an older one of ours the router
            # still keeps (a half-open link it has not noticed yet) must not block it.
            options = RegisterOptions(invoke="last", details_arg="details" if streams else None)
            await session.register(invoke, uri, options=options)
        except ApplicationError as err:
            raise CallFailed(uri, err.error, list(err.args), dict(err.kwargs)) from err

    async def publish(self, topic: str, *args: Any, timeout: float, **kwargs: Any) -> None:
        """Publish and wait for the router's acknowledgement."""
        session = self._require_session()
        try:
            await asyncio.wait_for(
                session.publish(topic, *args, options=PublishOptions(acknowledge=True), **kwargs),
                timeout,
            )
        except TimeoutError as err:
            raise CallTimeout(topic, timeout) from err
        except ApplicationError as err:
            raise CallFailed(topic, err.error, list(err.args), dict(err.kwargs)) from err

    def _require_session(self) -> Session:
        session = self._session
        if session is None:
            raise NotConnected(f"no session to {self.url}")
        return session


def _progress_sender(send: Callable[..., None] | None) -> Callable[..., None] | None:
    if send is None:
        return None

    def progress(*args: Any) -> None:
        try:
            send(*args)
        except (TransportLost, Disconnected) as err:
            raise NotConnected("link lost while streaming a result") from err

    return progress
