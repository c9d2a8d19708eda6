import ipaddress
import ssl
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .broker.setup import ADMIN_SECRET_FILE
from .isolation.networks import DEFAULT_POOL
from .monitor.monitor import MonitorConfig
from .monitor.pressure import Limit
from .runtime.hardening import ContainerPolicy
from .uplink.relay import host_port, router_address
from .uplink.wamp import DutyCycle, Transport


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_", extra="ignore")

    router_url: str = "ws://127.0.0.1:8080/ws"
    api_url: str = "http://127.0.0.1:8000"
    """The platform's public API (the gateway): artifacts come and go through it."""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    """The node's own broker, where applications publish data points (empty: none)."""
    realm: str = "edgecloud"
    ca_file: Path | None = None
    """PEM file of the certificate authorities trusted for ``wss://`` uplinks and an
    ``https://`` api_url (a private CA, a self-signed certificate); unset: the system's.
    Certificates and host names are always verified."""
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

    # What tenants get on this node (edgecloud_agent.isolation): each tenant has a network
    # of its own; these are the operator's choices around it.
    tenant_internet: bool = True
    """Whether tenant containers reach the Internet (never the node, its LAN or the mesh)."""
    tenant_blocked_networks: list[str] = []
    """More destinations tenant containers may not reach (CIDRs as JSON, e.g. a public
    address of the node's own), beyond every private, link-local and reserved range."""
    tenant_subnets: IPv4Network = DEFAULT_POOL
    """Where tenant networks' subnets come from (a /26 each, 62 containers)."""
    published_ports: str = ""
    """The range tenants may publish container ports from, ``LOW-HIGH`` (e.g.
    ``30000-30999``); empty: none."""
    tenant_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """What all of one tenant's containers together may take of the node's memory, CPU
    time and PIDs (its cgroup holds it, whatever each container asks for)."""
    container_pids_max: Annotated[int, Field(ge=8, le=4_194_304)] = 1024
    """The most PIDs one tenant container may have here (its limit is refused above it)."""
    node_pids: Annotated[int, Field(ge=8, le=4_194_304)] | None = None
    """The PIDs the node gives tenants altogether (each tenant's share is a share of them);
    unset: the kernel's ``pid_max``."""
    disk_reserve_bytes: Annotated[int, Field(ge=0)] = 1 << 30
    """Free disk the node always keeps: a container's /app, a copy out of a container or an
    image download that would eat into it is refused."""
    copy_out_max_bytes: Annotated[int, Field(ge=1)] = 1 << 30
    """The largest tar a copy out of a container (result files, a migration's /app) may be."""
    log_segment_bytes: Annotated[int, Field(ge=1024, le=256 << 10)] = 64 << 10
    """Containers' output goes to the cloud's storage in segments of about this size..."""
    log_segment_s: PositiveFloat = 2.0
    """...or this long after a segment's first line, whichever comes first."""
    log_spool_bytes: Annotated[int, Field(ge=1 << 20)] = 64 << 20
    """Segments held on the node at most (WAN down, on the mesh: logs wait for the WAN);
    when full, reading containers' output pauses (Docker keeps it) until segments go."""
    broker_admin_user: str = "edgecloud-agent"
    broker_admin_password_file: Path | None = None
    """The agent's own administrator login of the node's broker (``broker-setup`` writes
    it); unset: ``broker-admin.secret`` in the state directory. Without it the node's
    containers get no broker login and no sensor feeds run."""
    broker_container_host: str = ""
    """Where tenant containers reach the node's broker (a listener of it); unset: the
    address of Docker's default bridge, ``docker0``, which every tenant network routes to."""
    stop_timeout_s: float = 10.0
    """Grace between SIGTERM and SIGKILL when a container is stopped or restarted."""
    kept_copy_retention_s: PositiveFloat = 7 * 86400.0
    """How long an old copy of a container placed elsewhere meanwhile (stopped when the
    node came back, deploy/fencing.py) is kept for its tenant before it is removed."""
    placement_hold_s: PositiveFloat = 120.0
    """After a (re)join, reports wait at most this long for the cloud to say which copies
    are the node's own (a cloud that cannot answer must not hold them for ever)."""
    pull_timeout_s: float = 600.0
    journal_max_entries: int = 10_000
    journal_max_age_s: float = 7 * 86400.0
    disk_path: Path = Path("/")

    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    ping_interval_s: float = 1.0
    ping_timeout_s: float = 1.0
    """WAN pings: a dead WAN is noticed within about two seconds (they cost ~100 B/s)."""

    uplinks: str = ""
    """The links to the router in order of preference, separated by commas: ``name=URL``,
    or ``name=URL via HOST:PORT`` for the router at URL reached through a neighbour's relay
    at HOST:PORT, e.g. ``wan=wss://cloud.example/ws,lowpan=wss://cloud.example/ws via
    [fd00:1::2]:8099``. TLS then ends at the router: its certificate is checked against the
    URL's host, and the relay carries only ciphertext. The older form with the relay's
    address as the URL (``lowpan=ws://[fd00:1::2]:8099/ws``) still works, in plain ws://
    only. Empty: only ``wan`` at ``router_url``."""
    lowpan_ping_interval_s: float = 0.0
    lowpan_ping_timeout_s: float = 0.0
    """No pings on the slow link by default (each would cost the mesh about 300 bytes): there
    a heartbeat that gets no answer in call_timeout_s ends the link instead."""
    lowpan_silence_s: float = Field(default=14.0, ge=0)
    """A mesh link through a relay is dead after this long without the relay's beacon,
    however idle (0: only an unanswered heartbeat ends it). A beacon lost on the way is
    asked for again 1.5 s before it ends, so the relay's interval must be shorter by more."""
    lowpan_open_timeout_s: float = 6.0
    """A stuck handshake over the mesh is given up and tried again rather than waited out."""
    probe_interval_s: float = 1.0
    return_after_probes: int = 3
    """On a worse link, the better one must answer this many probes in a row before the
    agent moves back (hysteresis: a flapping WAN does not make it thrash)."""
    lowpan_heartbeat_interval_s: float = 60.0
    """Beats over the mesh: each costs it about 550 bytes with its acknowledgements, so one a
    minute; the cloud shows the node offline after three missed ones."""

    peer_url: str = ""
    """Where peers reach this node's broker for migrations, ``mqtt://host:port`` (an address
    of this node they can route to); empty: the node takes no part in peer migration."""
    peer_urls: str = ""
    """The same broker over each of the node's links in order of preference, as
    ``wan=mqtt://HOST:PORT,lowpan=mqtt://[MESH-ADDRESS]:PORT``: a peer whose WAN is gone
    reaches it over the mesh. Empty: :attr:`peer_url` alone."""
    peer_mesh_images: bool = False
    """The link policy for migrations: whether an image may go to a peer over the mesh
    (otherwise the peer pulls it from its registry, or the move fails)."""
    collaboration_level: int = Field(default=2, ge=0, le=2)
    """The most this node offers peers: 0 messaging only, 1 storage, 2 storage and compute."""
    neighbour_probe_interval_s: PositiveFloat = 30.0

    # The monitor (monitor/): what makes the node ask for its containers to move.
    monitor_enabled: bool = True
    monitor_interval_s: PositiveFloat = 5.0
    monitor_cooldown_s: float = 300.0
    monitor_cpu_percent: float = 90.0
    monitor_cpu_clear_percent: float = 70.0
    monitor_cpu_for_s: float = 60.0
    monitor_memory_percent: float = 90.0
    monitor_memory_clear_percent: float = 80.0
    monitor_memory_for_s: float = 60.0
    monitor_disk_percent: float = 95.0
    """Of ``disk_path``."""
    monitor_disk_clear_percent: float = 90.0
    monitor_disk_for_s: float = 60.0
    monitor_temperature_c: float = 85.0
    monitor_temperature_clear_c: float = 80.0
    monitor_temperature_for_s: float = 30.0
    monitor_temperature_path: Path | None = None
    """e.g. /sys/class/thermal/thermal_zone0/temp; None: the hottest sensor psutil knows."""
    monitor_probe_command: list[str] = []
    """An operator's health check, argv as JSON (never run through a shell); failing
    ``monitor_probe_failures`` times in a row predicts a failure."""
    monitor_probe_timeout_s: float = 10.0
    monitor_probe_failures: int = 3
    monitor_disk_errors_path: Path | None = None
    """A disk's I/O error counter, e.g. /sys/block/sda/device/ioerr_cnt."""
    monitor_disk_errors_limit: int = 1

    duty_cycle_awake_s: float = 0.0
    duty_cycle_asleep_s: float = 0.0
    """Power saving: keep the uplink open awake_s, then closed asleep_s, in turn (both > 0
    to enable). Commands for the node queue in the cloud until its next contact."""

    shell_max_sessions: PositiveInt = 16
    """Interactive shells open at once on this node, for all tenants together."""
    relay_listen: str = ""
    """Border router: where neighbours reach the router through this node, HOST:PORT or
    [IPv6]:PORT (this node's LoWPAN address, e.g. [fd00:1::2]:8099); empty: no relay.
    It passes bytes, unread, to the host and port of router_url (ws:// or wss://) and
    nowhere else."""
    # Refused at start when not positive, not when the relay starts inside the running agent.
    relay_beacon_interval_s: float = Field(default=12.0, ge=0)
    """How often each neighbour the relay serves gets a beacon (a one-byte UDP datagram
    at the relay's port: 63 bytes on an uncompressed link) telling it the mesh hop works; 0:
    none. Under the neighbours' ``lowpan_silence_s`` by more than 1.5 s."""
    relay_max_connections: PositiveInt = 8
    """Neighbours' connections at once; one more is dropped at once."""
    relay_rate_bytes_per_s: PositiveInt = 32_000
    """Per connection and per direction: one neighbour cannot take the whole WAN."""
    relay_handshake_timeout_s: PositiveFloat = 5.0
    """A neighbour must start speaking within this (the router is dialled only then), and
    the router must accept the connection within it."""
    relay_idle_timeout_s: PositiveFloat = 120.0
    """A relayed connection silent both ways this long is closed."""
    log_level: str = "INFO"
    log_json: bool = False
    """One JSON object per log line (edgecloud_contracts.logs), as the services write them."""

    def tls_context(self) -> ssl.SSLContext:
        """For ``wss://`` and ``https://``: verifies against :attr:`ca_file` or the system."""
        return ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )

    @model_validator(mode="after")
    def _readable_ca_file(self) -> Self:
        if self.ca_file is not None:
            try:
                self.tls_context()
            except (OSError, ssl.SSLError) as err:
                raise ValueError(f"AGENT_CA_FILE: {self.ca_file}: {err}") from err
        return self

    @property
    def monitor(self) -> MonitorConfig:
        return MonitorConfig(
            interval_s=self.monitor_interval_s,
            cooldown_s=self.monitor_cooldown_s,
            cpu=Limit(
                self.monitor_cpu_percent, self.monitor_cpu_clear_percent, self.monitor_cpu_for_s
            ),
            memory=Limit(
                self.monitor_memory_percent,
                self.monitor_memory_clear_percent,
                self.monitor_memory_for_s,
            ),
            disk=Limit(
                self.monitor_disk_percent, self.monitor_disk_clear_percent, self.monitor_disk_for_s
            ),
            disk_path=self.disk_path,
            temperature=Limit(
                self.monitor_temperature_c,
                self.monitor_temperature_clear_c,
                self.monitor_temperature_for_s,
            ),
            temperature_path=self.monitor_temperature_path,
            probe_command=self.monitor_probe_command,
            probe_timeout_s=self.monitor_probe_timeout_s,
            probe_failures=self.monitor_probe_failures,
            disk_errors_path=self.monitor_disk_errors_path,
            disk_errors_limit=self.monitor_disk_errors_limit,
            drain_path=self.state_dir / "drain",
        )

    @model_validator(mode="after")
    def _valid_monitor(self) -> Self:
        _ = self.monitor  # ValueError: a bad threshold is refused at start
        return self

    @property
    def duty_cycle(self) -> DutyCycle | None:
        if self.duty_cycle_awake_s > 0 and self.duty_cycle_asleep_s > 0:
            return DutyCycle(self.duty_cycle_awake_s, self.duty_cycle_asleep_s)
        return None

    @property
    def transports(self) -> list[Transport]:
        """The parsed :attr:`uplinks`."""
        if not self.uplinks.strip():
            return [self._transport("wan", self.router_url)]
        found = []
        for item in filter(None, (part.strip() for part in self.uplinks.split(","))):
            link, _, rest = item.partition("=")
            url, via = _url_and_via(rest)
            found.append(self._transport(link.strip(), url, via))
        return found

    def _transport(self, link: str, url: str, via: tuple[str, int] | None = None) -> Transport:
        if link == "wan":
            return Transport(link, url, self.ping_interval_s, self.ping_timeout_s, 5.0, via)
        return Transport(
            link,
            url,
            self.lowpan_ping_interval_s,
            self.lowpan_ping_timeout_s,
            self.lowpan_open_timeout_s,
            via,
            self.lowpan_silence_s if via is not None else 0.0,
        )

    @property
    def peer_addresses(self) -> list[str]:
        """The parsed :attr:`peer_urls`, or :attr:`peer_url` alone, in order."""
        if not self.peer_urls.strip():
            return [self.peer_url] if self.peer_url else []
        items = filter(None, (part.strip() for part in self.peer_urls.split(",")))
        return [item.partition("=")[2].strip() for item in items]

    @model_validator(mode="after")
    def _valid_peer_urls(self) -> Self:
        for item in filter(None, (part.strip() for part in self.peer_urls.split(","))):
            link, equals, url = item.partition("=")
            if not equals or link.strip() not in ("wan", "lowpan"):
                raise ValueError(f"peer_urls: {item!r} is not wan=URL or lowpan=URL")
            parts = urlsplit(url.strip())
            if parts.scheme != "mqtt" or not parts.hostname:
                raise ValueError(f"peer_urls: {url.strip()!r} is not mqtt://HOST:PORT")
        return self

    @model_validator(mode="after")
    def _valid_relay(self) -> Self:
        if self.relay_listen:
            host_port(self.relay_listen)  # ValueError: refused at start
            router_address(self.router_url)
        return self

    @model_validator(mode="after")
    def _valid_uplinks(self) -> Self:
        for item in filter(None, (part.strip() for part in self.uplinks.split(","))):
            link, equals, rest = item.partition("=")
            if not equals or link.strip() not in ("wan", "lowpan"):
                raise ValueError(f"uplinks: {item!r} is not wan=URL or lowpan=URL [via HOST:PORT]")
            url, _ = _url_and_via(rest)
            if urlsplit(url).scheme not in ("ws", "wss"):
                raise ValueError(f"uplinks: {url!r} is not a ws:// or wss:// URL")
        return self

    @property
    def container_policy(self) -> ContainerPolicy:
        return ContainerPolicy(pids_per_container=self.container_pids_max, ports=self.port_range)

    @property
    def port_range(self) -> tuple[int, int] | None:
        """The parsed :attr:`published_ports`."""
        if not self.published_ports.strip():
            return None
        low, dash, high = self.published_ports.strip().partition("-")
        if not dash or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"published_ports: {self.published_ports!r} is not LOW-HIGH")
        first, last = int(low), int(high)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"published_ports: {self.published_ports!r} is not within 1-65535")
        return first, last

    @property
    def admin_secret_file(self) -> Path:
        return self.broker_admin_password_file or self.state_dir / ADMIN_SECRET_FILE

    @model_validator(mode="after")
    def _valid_tenant_policy(self) -> Self:
        # Refused at start, not at the first create: the operator learns it at once.
        _ = self.port_range
        for network in self.tenant_blocked_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as err:
                raise ValueError(f"tenant_blocked_networks: {network!r}: {err}") from err
        return self


def _url_and_via(text: str) -> tuple[str, tuple[str, int] | None]:
    """``URL`` or ``URL via HOST:PORT`` of one uplink (ValueError: not so)."""
    url, *via = text.split()
    if not via:
        return url, None
    if len(via) != 2 or via[0] != "via":
        raise ValueError(f"uplinks: {text.strip()!r} is not URL or URL via HOST:PORT")
    return url, host_port(via[1])
