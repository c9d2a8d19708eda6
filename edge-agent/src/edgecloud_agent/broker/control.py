"""Mosquitto's dynamic security plugin, driven over its control topic.

The plugin keeps clients (username, password, an optional fixed client id), roles (lists of
ACLs) and a default that denies publishing and subscribing. An administrator changes them at
run time by publishing JSON commands to ``$CONTROL/dynamic-security/v1``; the answers come
back on ``.../response``. See https://mosquitto.org/documentation/dynamic-security/.
"""

import asyncio
import json
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"


class BrokerError(Exception):
    """The node's broker could not be reached, or refused a change."""


class DynsecAdmin:
    """Commands to the broker as its administrator, one batch per connection (the agent
    changes identities a few times per container, not per message)."""

    def __init__(self, *, url: str, username: str, password: str, timeout_s: float = 10.0) -> None:
        address = urlsplit(url)
        if address.scheme != "mqtt" or not address.hostname:
            raise ValueError(f"the broker's address must be mqtt://host[:port], not {url!r}")
        self._host, self._port = address.hostname, address.port or 1883
        self._username, self._password = username, password
        self._timeout = timeout_s
        self._lock = asyncio.Lock()

    async def execute(self, *commands: dict[str, Any], allow: tuple[str, ...] = ()) -> None:
        """Run ``commands`` in order; :class:`BrokerError` if any fails, unless its error
        contains one of ``allow`` (e.g. ``"already exists"`` for a repeated create)."""
        for response in await self.query(*commands):
            error = response.get("error")
            if error and not any(part in str(error) for part in allow):
                raise BrokerError(f"{response.get('command')}: {error}")

    async def query(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """The plugin's answer to each of ``commands``, in order."""
        tagged = []
        for command in commands:
            tagged.append({**command, "correlationData": secrets.token_hex(8)})
        wanted = [command["correlationData"] for command in tagged]
        async with self._lock:
            try:
                async with (
                    asyncio.timeout(self._timeout),
                    aiomqtt.Client(
                        self._host,
                        self._port,
                        username=self._username,
                        password=self._password,
                        identifier=f"{self._username}-{secrets.token_hex(6)}",
                        timeout=self._timeout,
                    ) as client,
                ):
                    await client.subscribe(RESPONSE_TOPIC, qos=1)
                    await client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
                    return await _responses(client, wanted)
            except TimeoutError as err:
                raise BrokerError(
                    f"no answer from the broker's control within {self._timeout:g}s"
                ) from err
            except aiomqtt.MqttError as err:
                raise BrokerError(f"the node's broker: {err}") from err


async def _responses(client: aiomqtt.Client, wanted: list[str]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    async for message in client.messages:
        try:
            answer = json.loads(bytes(message.payload))
        except (TypeError, ValueError):
            continue
        for response in answer.get("responses") or []:
            if isinstance(response, dict) and response.get("correlationData") in wanted:
                found[str(response["correlationData"])] = response
        if len(found) == len(wanted):
            break
    return [found[tag] for tag in wanted]
