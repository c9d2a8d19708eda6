"""Setting a node's broker up: its configuration and its identities' store.

The broker listens only where it must (every listener is given here): the node's loopback
for the agent and the node's own sensors, the address tenant containers reach it at (Docker's
default bridge, whose address containers of every tenant network route to), and the address
peers reach it at for migrations (``AGENT_PEER_URL``). The dynamic security plugin's store
starts with one administrator, the agent, whose password is written to the agent's state
directory (mode 0600) and to nowhere else.
"""

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ADMIN_USER = "edgecloud-agent"
ADMIN_SECRET_FILE = "broker-admin.secret"
PLUGIN_NAME = "mosquitto_dynamic_security.so"
PLUGIN_DIRS = (Path("/usr/lib"), Path("/usr/local/lib"), Path("/usr/lib64"))


@dataclass(frozen=True, slots=True)
class Listener:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Listener":
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a listener is HOST:PORT, not {text!r}")
        return cls(host.strip("[]"), int(port))


def shipped_config() -> str:
    """The node broker's fixed settings (``mosquitto.conf`` beside this module)."""
    return resources.files(__package__).joinpath("mosquitto.conf").read_text()


def find_plugin() -> Path:
    """Debian installs the plugin under its architecture's library directory."""
    for directory in PLUGIN_DIRS:
        for found in sorted(directory.glob(f"**/{PLUGIN_NAME}")):
            return found
    raise FileNotFoundError(f"{PLUGIN_NAME} not found (Debian's mosquitto package has it)")


def node_config(
    *,
    listeners: list[Listener],
    store: Path,
    persistence_dir: Path | None = None,
    plugin: Path | None = None,
    extra: list[str] | None = None,
) -> str:
    """The whole configuration of a node's broker: the shipped settings, the plugin with
    its store, and each listener."""
    lines = [
        shipped_config().rstrip(),
        "",
        "# This node's own lines (edgecloud-agent broker-setup).",
        f"plugin {plugin or find_plugin()}",
        f"plugin_opt_config_file {store}",
    ]
    if persistence_dir is not None:
        lines.append(f"persistence_location {persistence_dir}/")
    for listener in listeners:
        lines.append(f"listener {listener.port} {listener.host}")
    return "\n".join([*lines, *(extra or []), ""])


def init_store(store: Path, secret_file: Path, *, owner: str | None = None) -> None:
    """A new identities store whose one administrator is the agent; its password goes to
    ``secret_file``. An existing store and secret are kept (running this again changes
    nothing); ``owner`` is the broker's user, who must read the store."""
    if store.exists() and secret_file.exists():
        return
    password = secrets.token_urlsafe(32)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.unlink(missing_ok=True)
    control = shutil.which("mosquitto_ctrl")
    if control is None:
        raise FileNotFoundError("mosquitto_ctrl not found (Debian's mosquitto package has it)")
    subprocess.run(
        [control, "dynsec", "init", str(store), ADMIN_USER, password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    store.chmod(0o600)
    if owner is not None:
        shutil.chown(store, user=owner, group=owner)
    secret_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = secret_file.with_suffix(".tmp")
    temporary.write_text(password)
    temporary.chmod(0o600)
    temporary.replace(secret_file)


def read_admin_secret(secret_file: Path) -> str | None:
    try:
        return secret_file.read_text().strip() or None
    except FileNotFoundError:
        return None
