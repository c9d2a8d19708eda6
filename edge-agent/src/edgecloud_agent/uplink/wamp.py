"""The agent's WAMP session to the router, kept alive over an unreliable link.

autobahn is used only here. The uplink logs in with the node's Ed25519 key
(WAMP-cryptosign), presenting the enrolment token until the node is enrolled. Dead
links are noticed by WebSocket pings, not TCP timeouts; after any loss the uplink
reconnects with capped exponential backoff and full jitter, so a fleet that lost its
router does not come back in lockstep.
"""

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from autobahn.asyncio.wamp import Session
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.serializer import CBORSerializer
from autobahn.wamp.types import CallOptions, ComponentConfig, PublishOptions, RegisterOptions

from edgecloud_contracts import uris

from .errors import CallFailed, CallTimeout, CommandRejected, LoginRefused, NotConnected

logger = logging.getLogger(__name__)

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


class Uplink:
    def __init__(
        self,
        *,
        url: str,
        realm: str,
        login: Login,
        backoff: Backoff,
        ping_interval_s: float = 5.0,
        ping_timeout_s: float = 5.0,
        on_join: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self._realm = realm
        self._login = login
        self._backoff = backoff
        self._ping_interval = ping_interval_s
        self._ping_timeout = ping_timeout_s
        self._on_join = on_join
        self._session: Session | None = None
        self._joined = asyncio.Event()
        self._stopping = False
        self.sessions_joined = 0

    @property
    def connected(self) -> bool:
        return self._joined.is_set()

    @property
    def link(self) -> str:
        return "wan"

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._joined.wait(), timeout)

    def enrolment_done(self) -> None:
        """Stop presenting the (now used) enrolment token on later logins."""
        self._login = Login(self._login.device_key, self._login.private_key, enrolment_token=None)

    async def run(self) -> None:
        """Connect, stay connected, reconnect; returns after :meth:`close`.

        Raises :class:`LoginRefused` when the router refuses the node's credential.
        """
        attempt = 0
        while not self._stopping:
            joined = await self._connect_once()
            if self._stopping:
                return
            attempt = 0 if joined else attempt + 1
            delay = self._backoff.delay(attempt)
            logger.info("reconnecting to %s in %.1fs", self.url, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> bool:
        """One session's life. True if it got as far as joining the realm."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[tuple[str, str]] = loop.create_future()
        session = _NodeSession(ComponentConfig(realm=self._realm), self._login)
        joined_once = False

        async def on_join(sess: Session, details: Any) -> None:
            nonlocal joined_once
            joined_once = True
            self._session = sess
            self.sessions_joined += 1
            if self._on_join is not None:
                await self._on_join()
            self._joined.set()
            logger.info(
                "joined %s as %s (session %s)", self.url, self._login.device_key, details.session
            )

        def on_leave(sess: Session, details: Any) -> None:
            if not ended.done():
                ended.set_result((str(details.reason), str(details.message or "")))

        def on_disconnect(sess: Session, was_clean: bool) -> None:
            if not ended.done():
                ended.set_result(("disconnected", "clean" if was_clean else "connection lost"))

        session.on("join", on_join)
        session.on("leave", on_leave)
        session.on("disconnect", on_disconnect)

        factory = WampWebSocketClientFactory(
            lambda: session, url=self.url, serializers=[CBORSerializer()]
        )
        factory.setProtocolOptions(
            autoPingInterval=self._ping_interval,
            autoPingTimeout=self._ping_timeout,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
        )
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(factory, host, port, ssl=parts.scheme == "wss"), 10
            )
        except (OSError, TimeoutError) as err:
            logger.debug("cannot reach %s: %s", self.url, err)
            return False
        try:
            reason, message = await ended
        finally:
            self._joined.clear()
            self._session = None
            transport.close()
        if any(reason.startswith(prefix) for prefix in _REFUSALS):
            raise LoginRefused(reason, message)
        if joined_once and not self._stopping:
            logger.warning("lost session to %s: %s %s", self.url, reason, message)
        return joined_once

    async def close(self) -> None:
        """Leave the realm cleanly (the cloud marks the node offline at once)."""
        self._stopping = True
        session = self._session
        self._joined.clear()
        if session is not None and session.is_attached():
            try:
                await asyncio.wait_for(session.leave("wamp.close.normal", "agent stopping"), 2)
            except (TimeoutError, TransportLost, ApplicationError) as err:
                logger.debug("leave failed: %s", err)

    async def call(self, uri: str, *args: Any, timeout: float, **kwargs: Any) -> Any:
        session = self._require_session()
        try:
            pending = session.call(uri, *args, options=_call_options(timeout), **kwargs)
            pending.add_done_callback(_retrieve_outcome)
            # Shielded: cancelling autobahn's future makes it send CANCEL, which fails
            # on a transport that is already gone; the router times the call out anyway.
            return await asyncio.wait_for(asyncio.shield(pending), timeout + 1)
        except TimeoutError as err:
            raise CallTimeout(uri, timeout) from err
        except ApplicationError as err:
            if err.error == "wamp.error.canceled":
                raise CallTimeout(uri, timeout) from err
            raise CallFailed(uri, err.error, list(err.args), dict(err.kwargs)) from err
        except TransportLost as err:
            raise NotConnected(f"link lost during {uri}") from err

    async def register(self, uri: str, handler: Callable[..., Awaitable[Any]]) -> None:
        """Register ``handler`` for this session; it may raise :class:`CommandRejected`."""
        session = self._require_session()

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            try:
                return await handler(*args, **kwargs)
            except CommandRejected as err:
                # The only exception autobahn passes to the caller intact.
                raise ApplicationError(err.uri, err.message) from err

        try:
            # "last": a device's procedures are only ever registered by the device itself,
            # so the newest registration is this session; an older one of ours the router
            # still keeps (a half-open link it has not noticed yet) must not block it.
            await session.register(invoke, uri, options=RegisterOptions(invoke="last"))
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
