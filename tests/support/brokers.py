"""A node's Mosquitto broker for agents that run on this machine itself (not in a testbed
node), configured exactly as ``edgecloud-agent broker-setup`` configures a node's: the
shipped settings, the dynamic security plugin with the agent as its administrator, and
listeners on loopback and on Docker's default bridge (where tenant containers reach it).

The machine's own broker on 127.0.0.1:1883 is not a node's (it admits anyone): tests never
use it for agents.
"""

import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from edgecloud_agent.broker.control import DynsecAdmin
from edgecloud_agent.broker.identities import BrokerIdentities
from edgecloud_agent.broker.setup import (
    ADMIN_SECRET_FILE,
    ADMIN_USER,
    Listener,
    init_store,
    node_config,
    read_admin_secret,
)
from edgecloud_contracts.migrations import BrokerLogin

from .processes import ManagedProcess, free_port, wait_port


def docker_bridge(netns: str | None = None) -> str:
    """The address of ``docker0`` (Docker's default bridge) on this machine, or in a
    network namespace."""
    argv = ["ip", *(["-n", netns] if netns else []), "-j", "-4", "addr", "show", "docker0"]
    found = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    return str(found[0]["addr_info"][0]["local"])


@dataclass
class NodeBroker:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def secret_file(self) -> Path:
        return self.workdir / ADMIN_SECRET_FILE

    @property
    def container_host(self) -> str:
        return docker_bridge()

    def start(self) -> "NodeBroker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        store = self.workdir / "dynamic-security.json"
        init_store(store, self.secret_file)
        config = self.workdir / "mosquitto.conf"
        listeners = [Listener("127.0.0.1", self.port), Listener(self.container_host, self.port)]
        config.write_text(
            node_config(
                listeners=listeners,
                store=store,
                persistence_dir=self.workdir,
                # Started as root it would switch to `mosquitto`, who cannot write here.
                extra=["user root", "log_dest stdout"],
            )
        )
        mosquitto = shutil.which("mosquitto", path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert mosquitto is not None, "mosquitto is not installed (infra/setup/system.sh)"
        self.process = ManagedProcess(
            "node broker", [mosquitto, "-c", str(config)], {}, self.workdir / "mosquitto.log"
        ).start()
        wait_port(self.port, self.process)
        return self

    def admin_env(self, state_dir: Path) -> dict[str, str]:
        """What an agent needs to use this broker (its admin login copied to its state)."""
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(self.secret_file, state_dir / ADMIN_SECRET_FILE)
        return {
            "AGENT_MQTT_URL": self.url,
            "AGENT_BROKER_CONTAINER_HOST": self.container_host,
        }

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


async def sensor_login(broker: NodeBroker, topics: list[str]) -> BrokerLogin:
    """A login for a sensor publishing ``topics``, made as an operator makes one
    (``edgecloud-agent sensor add``: here through the same code, with the admin login)."""
    secret = read_admin_secret(broker.secret_file)
    assert secret is not None
    admin = DynsecAdmin(url=broker.url, username=ADMIN_USER, password=secret)
    identities = BrokerIdentities(admin=admin, state_dir=broker.workdir / "operator")
    try:
        return await identities.sensor(f"sensor-{secrets.token_hex(4)}", topics)
    finally:
        identities.close()


def client_with(host: str, port: int, login: BrokerLogin) -> aiomqtt.Client:
    """An MQTT client that connects to a node broker with ``login`` (as a sensor would)."""
    return aiomqtt.Client(
        host, port, identifier=login.client_id, username=login.username, password=login.password
    )
