"""``edgecloud-agent broker-setup`` and ``edgecloud-agent sensor``: an operator's commands
for the node's broker (run as root on the node, with the agent's settings)."""

import argparse
import asyncio
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ..runtime.docker import DockerRuntime
from ..runtime.errors import RuntimeFailure
from ..settings import AgentSettings
from .control import BrokerError, DynsecAdmin
from .identities import BrokerIdentities, check_sensor_name
from .setup import Listener, init_store, node_config, read_admin_secret

DEFAULT_CONFIG = Path("/etc/mosquitto/conf.d/edgecloud.conf")
DEFAULT_STORE = Path("/var/lib/mosquitto/dynamic-security.json")
BROKER_USER = "mosquitto"


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    setup = commands.add_parser(
        "broker-setup",
        help="configure the node's Mosquitto: listeners, identities, the agent's admin login",
    )
    setup.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    setup.add_argument("--store", type=Path, default=DEFAULT_STORE)
    setup.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="where the broker listens (repeat); default: 127.0.0.1, Docker's default bridge"
        " and the peer address of AGENT_PEER_URL, on the port of AGENT_MQTT_URL",
    )
    setup.add_argument("--user", default=BROKER_USER, help="the broker's own user")
    setup.add_argument(
        "--persistence",
        type=Path,
        help="where the broker keeps queued messages"
        " (default: the one its main configuration names)",
    )
    setup.set_defaults(command=_broker_setup)

    sensor = commands.add_parser("sensor", help="logins for the sensors of this node")
    actions = sensor.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="a login that may publish the given topics")
    add.add_argument("name")
    add.add_argument("--topic", action="append", required=True, metavar="FILTER")
    add.set_defaults(command=_sensor_add)
    remove = actions.add_parser("remove", help="remove a sensor's login")
    remove.add_argument("name")
    remove.set_defaults(command=_sensor_remove)


def _broker_setup(args: argparse.Namespace, settings: AgentSettings) -> int:
    port = urlsplit(settings.mqtt_url).port or 1883
    listeners = [Listener.parse(text) for text in args.listen]
    if not listeners:
        listeners = [Listener("127.0.0.1", port)]
        bridge = asyncio.run(_docker_bridge(settings))
        if bridge:
            listeners.append(Listener(bridge, port))
        # Where peers reach it: over each of the node's links (AGENT_PEER_URLS).
        for url in dict.fromkeys([settings.peer_url, *settings.peer_addresses]):
            peer = urlsplit(url)
            if peer.hostname:
                listeners.append(Listener(peer.hostname, peer.port or port))
    init_store(args.store, settings.admin_secret_file, owner=args.user)
    args.config.parent.mkdir(parents=True, exist_ok=True)
    args.config.write_text(
        node_config(listeners=listeners, store=args.store, persistence_dir=args.persistence)
    )
    print(f"broker configured in {args.config}: listening on", end=" ")
    print(", ".join(f"{listener.host}:{listener.port}" for listener in listeners))
    print("restart mosquitto to apply it")
    return 0


async def _docker_bridge(settings: AgentSettings) -> str | None:
    async with DockerRuntime(url=settings.docker_url) as runtime:
        try:
            return await runtime.gateway_of("bridge")
        except RuntimeFailure:
            return None


def _identities(settings: AgentSettings) -> BrokerIdentities:
    secret = read_admin_secret(settings.admin_secret_file)
    if secret is None:
        raise SystemExit(
            f"no broker admin login in {settings.admin_secret_file}: broker-setup first"
        )
    admin = DynsecAdmin(url=settings.mqtt_url, username=settings.broker_admin_user, password=secret)
    return BrokerIdentities(admin=admin, state_dir=settings.state_dir)


def _sensor_add(args: argparse.Namespace, settings: AgentSettings) -> int:
    name = check_sensor_name(args.name)
    identities = _identities(settings)
    try:
        login = asyncio.run(identities.sensor(name, list(args.topic)))
    except BrokerError as err:
        print(f"edgecloud-agent: {err}", file=sys.stderr)
        return 1
    finally:
        identities.close()
    print(json.dumps(login.model_dump(), indent=2))
    return 0


def _sensor_remove(args: argparse.Namespace, settings: AgentSettings) -> int:
    identities = _identities(settings)
    try:
        asyncio.run(identities.forget("sensor", check_sensor_name(args.name)))
    except BrokerError as err:
        print(f"edgecloud-agent: {err}", file=sys.stderr)
        return 1
    finally:
        identities.close()
    return 0
