from pathlib import Path
from typing import Self

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .runtime.errors import PolicyRefused
from .runtime.hardening import ContainerPolicy


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_", extra="ignore")

    router_url: str = "ws://127.0.0.1:8080/ws"
    api_url: str = "http://127.0.0.1:8000"
    """The platform's public API (the gateway): artifacts come and go through it."""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    """The node's own broker, where applications publish data points (empty: none)."""
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
    inventory_interval_s: float = 60.0
    """How often the node lists its containers for the cloud to reconcile (and on connect)."""
    call_timeout_s: float = 10.0
    docker_url: str | None = None
    """Docker Engine API address; the local socket when unset."""
    container_network: str = "bridge"
    """Docker network of tenant containers (``none`` where the engine has no bridge)."""
    allow_host_network: bool = False
    """Operator policy: may tenant containers use the host's network (``host`` above)?"""
    stop_timeout_s: float = 10.0
    """Grace between SIGTERM and SIGKILL when a container is stopped or restarted."""
    pull_timeout_s: float = 600.0
    journal_max_entries: int = 10_000
    journal_max_age_s: float = 7 * 86400.0
    disk_path: Path = Path("/")

    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 5.0
    log_level: str = "INFO"

    @property
    def container_policy(self) -> ContainerPolicy:
        return ContainerPolicy(
            network=self.container_network, allow_host_network=self.allow_host_network
        )

    @model_validator(mode="after")
    def _network_policy(self) -> Self:
        # Refused at start, not at the first create: the operator learns it at once.
        try:
            self.container_policy.check()
        except PolicyRefused as err:
            raise ValueError(f"container_network={self.container_network}: {err}") from err
        return self
