"""Raw WAMP sessions for attacks: any auth method, authid and role a client may claim.

The agent's uplink and the services' WampLink only log in the way they are meant to;
these sessions log in however a test says (anonymous, a ticket for a device, a device key
for a service's name) and expose autobahn's session as it is, with subscribe and
arbitrary arguments.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from autobahn.asyncio.wamp import Session
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.serializer import CBORSerializer
from autobahn.wamp.types import ComponentConfig

from tests.support.stack import Stack


class Refused(Exception):
    """The router ended the session before it joined."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class RawSession(Session):
    def __init__(
        self,
        *,
        authmethods: list[str],
        authid: str | None,
        authrole: str | None,
        ticket: str | None = None,
        private_key: bytes | None = None,
        enrolment_token: str | None = None,
    ) -> None:
        super().__init__(ComponentConfig(realm="edgecloud"))
        self._authmethods = authmethods
        self._authid = authid
        self._authrole = authrole
        self._ticket = ticket
        self._key = CryptosignKey.from_bytes(private_key) if private_key else None
        self._enrolment_token = enrolment_token
        loop = asyncio.get_running_loop()
        self.joined: asyncio.Future[Any] = loop.create_future()
        self.ended: asyncio.Future[tuple[str, str]] = loop.create_future()

    def onConnect(self) -> None:
        extra: dict[str, str] = {}
        if self._key is not None:
            extra["pubkey"] = str(self._key.public_key())
        if self._enrolment_token:
            extra["enrolment_token"] = self._enrolment_token
        self.join(
            "edgecloud",
            authmethods=self._authmethods,
            authid=self._authid,
            authrole=self._authrole,
            authextra=extra or None,
        )

    def onChallenge(self, challenge: Any) -> Any:
        if challenge.method == "ticket" and self._ticket is not None:
            return self._ticket
        if challenge.method == "cryptosign" and self._key is not None:
            return self._key.sign_challenge(challenge)
        raise ValueError(f"no answer to a {challenge.method} challenge")

    def onJoin(self, details: Any) -> None:
        if not self.joined.done():
            self.joined.set_result(details)

    def onLeave(self, details: Any) -> None:
        if not self.ended.done():
            self.ended.set_result((str(details.reason), str(details.message or "")))
        super().onLeave(details)

    def onDisconnect(self) -> None:
        if not self.ended.done():
            self.ended.set_result(("disconnected", ""))


@asynccontextmanager
async def raw_session(stack: Stack, **login: Any) -> AsyncIterator[RawSession]:
    """A joined raw session (keyword arguments as :class:`RawSession`); raises
    :class:`Refused` when the router does not let it join."""
    session = RawSession(**login)
    factory = WampWebSocketClientFactory(
        lambda: session, url=stack.router_url, serializers=[CBORSerializer()]
    )
    factory.setProtocolOptions(openHandshakeTimeout=10, closeHandshakeTimeout=2)
    host, port = stack.router_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    socket, _ = await asyncio.get_running_loop().create_connection(factory, host, int(port))
    try:
        async with asyncio.timeout(15):
            await asyncio.wait({session.joined, session.ended}, return_when="FIRST_COMPLETED")
        if not session.joined.done():
            raise Refused(*session.ended.result())
        yield session
    finally:
        socket.close()


@asynccontextmanager
async def raw_device(
    stack: Stack, *, key: str, private_key: bytes | None = None, token: str | None = None
) -> AsyncIterator[RawSession]:
    """A device logged in with its own key (a fresh one unless given), as the agent does."""
    async with raw_session(
        stack,
        authmethods=["cryptosign"],
        authid=key,
        authrole="device",
        private_key=private_key or secrets.token_bytes(32),
        enrolment_token=token,
    ) as session:
        yield session
