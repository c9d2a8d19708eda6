"""MQTT from inside a tenant container that has nothing but busybox: the packets of MQTT
3.1.1 written with ``printf`` and sent with ``nc``, as a script for ``sh -c``.

A script connects with the login the node gave the container (its ``EDGECLOUD_MQTT_*``
variables, unless others are given), publishes one message at QoS 0 or subscribes to a
filter, waits a moment, disconnects, and prints what the broker sent back, byte by byte in
decimal; :func:`answers` reads the packets out of that. Enough for an application publishing
a data point, or for a tenant trying what its login may not do."""

import shlex
from dataclasses import dataclass

# Remaining length (below 16384) and length-prefixed strings, byte by byte in octal.
_FUNCTIONS = r"""
byte() { printf "\\$(printf %o "$1")"; }
enc() {
  if [ "$1" -lt 128 ]; then byte "$1"; else byte $(( $1 % 128 + 128 )); byte $(( $1 / 128 )); fi
}
str() { byte $(( ${#1} / 256 )); byte $(( ${#1} % 256 )); printf %s "$1"; }
connect() {
  byte 16; enc $(( 12 + ${#cid} + 2 + ${#u} + 2 + ${#p} ))
  byte 0; byte 4; printf MQTT; byte 4; byte 194; byte 0; byte 60
  str "$cid"; str "$u"; str "$p"
}
"""
CONNACK, PUBLISH, SUBACK = 2, 3, 9
REFUSED_NOT_AUTHORISED = 5
SUBSCRIPTION_FAILED = 128


@dataclass(frozen=True)
class Answers:
    """What the broker sent: the CONNACK's return code (None: no answer at all), the
    SUBACK's, and the topics of the messages delivered."""

    connack: int | None
    suback: int | None
    topics: list[str]


CONTAINER_LOGIN = {
    "username": "$EDGECLOUD_MQTT_USERNAME",
    "password": "$EDGECLOUD_MQTT_PASSWORD",
    "client_id": "$EDGECLOUD_MQTT_CLIENT_ID",
    "host": "$EDGECLOUD_MQTT_HOST",
    "port": "$EDGECLOUD_MQTT_PORT",
}
"""The login and broker the node gave the container: what a script uses unless told."""


def _word(value: str) -> str:
    return f'"{value}"' if value.startswith("$") else shlex.quote(value)


def _script(body: str, wait_s: float, login: dict[str, str]) -> str:
    """Connect with ``login`` (over :data:`CONTAINER_LOGIN`), send ``body``, wait, leave."""
    found = {**CONTAINER_LOGIN, **login}
    head = f"cid={_word(found['client_id'])}; u={_word(found['username'])}"
    head += f"; p={_word(found['password'])}"
    # A pause after CONNECT: a broker refusing the login closes the connection, and were
    # nc still writing then, the reset would discard the CONNACK before it is printed.
    send = (
        f"{{ connect\n  sleep 0.3\n{body}\n  sleep {wait_s:g}; byte 224; byte 0\n}}"
        f" | nc -w {int(wait_s) + 3} {_word(found['host'])} {_word(found['port'])}"
        " | od -An -v -tu1"
    )
    return "\n".join([_FUNCTIONS, head, send])


def publish_script(payload: str, *, topic: str = "$EDGECLOUD_DATA_TOPIC", **login: str) -> str:
    """Publish ``payload`` at QoS 0. ``topic`` and ``login`` (username, password, client_id,
    host, port) starting with ``$`` are the container's own variables, anything else is
    taken literally."""
    body = f"  t={_word(topic)}; m={shlex.quote(payload)}\n"
    body += '  byte 48; enc $(( 2 + ${#t} + ${#m} )); str "$t"; printf %s "$m"'
    return _script(body, 1, login)


def subscribe_script(topic_filter: str, *, wait_s: float = 3, **login: str) -> str:
    """Subscribe to ``topic_filter`` at QoS 0 and listen ``wait_s``."""
    body = f"  f={_word(topic_filter)}\n"
    body += '  byte 130; enc $(( 2 + 2 + ${#f} + 1 )); byte 0; byte 1; str "$f"; byte 0'
    return _script(body, wait_s, login)


def answers(output: str) -> Answers:
    """The packets in a script's output (its decimal bytes)."""
    data = [int(word) for word in output.split() if word.isdigit()]
    connack = suback = None
    topics: list[str] = []
    at = 0
    while at < len(data):
        kind = data[at] >> 4
        length, shift, at = 0, 0, at + 1
        while at < len(data):
            length += (data[at] & 127) << shift
            shift += 7
            at += 1
            if data[at - 1] < 128:
                break
        body = data[at : at + length]
        at += length
        if kind == CONNACK and len(body) >= 2:
            connack = body[1]
        elif kind == SUBACK and len(body) >= 3:
            suback = body[2]
        elif kind == PUBLISH and len(body) >= 2:
            size = body[0] * 256 + body[1]
            topics.append(bytes(body[2 : 2 + size]).decode(errors="replace"))
    return Answers(connack, suback, topics)
