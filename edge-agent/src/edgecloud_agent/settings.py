from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_", extra="ignore")

    router_url: str = "ws://127.0.0.1:8080/ws"
    realm: str = "edgecloud"
    state_dir: Path = Path("/var/lib/edgecloud-agent")
    enrolment_token: SecretStr | None = None
    """One-time token from an operator; needed only until the node is enrolled."""

    hostname: str = ""
    """Overrides the machine's hostname in the device id (several agents on one host)."""
    mac: str = ""
    """Overrides the MAC address in the device id."""
    name: str = ""
    location: str = ""

    heartbeat_interval_s: float = 5.0
    call_timeout_s: float = 10.0
    docker_url: str | None = None
    """Docker Engine API address; the local socket when unset."""
    disk_path: Path = Path("/")

    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 5.0
    log_level: str = "INFO"
