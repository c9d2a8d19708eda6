"""The cloud side for tests: router plus the five services, on free ports, with secrets of
their own (EDGECLOUD_ENV=test: no development defaults)."""

import secrets
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .processes import (
    PYTHON,
    ROOT,
    ROUTER_PYTHON,
    ManagedProcess,
    free_port,
    wait_healthy,
    wait_port,
)

SERVICES = {
    "registry": "edgecloud_registry",
    "gateway": "edgecloud_gateway",
    "orchestrator": "edgecloud_orchestrator",
    "storage": "edgecloud_storage",
    "migration-scheduler": "edgecloud_migration_scheduler",
}
PG_PORT = 5432
"""The machine's PostgreSQL (a test may run a server of its own: tests/support/postgres.py)."""


def pg_admin(port: int = PG_PORT) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


PG_ADMIN = pg_admin()


def prefix(service: str) -> str:
    return service.upper().replace("-", "_")


def create_pg_database(port: int = PG_PORT) -> str:
    name = f"edgecloud_test_{uuid.uuid4().hex[:10]}"
    subprocess.run(
        ["psql", pg_admin(port), "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"],
        check=True,
        capture_output=True,
    )
    return name


def drop_pg_database(name: str, port: int = PG_PORT) -> None:
    subprocess.run(
        ["psql", pg_admin(port), "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
        check=False,
        capture_output=True,
    )


def drop_pg_connections(name: str) -> int:
    """End every server connection to one database, as a PostgreSQL restart would."""
    done = subprocess.run(
        [
            "psql",
            pg_admin(),
            "-tAc",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout.strip() or 0)


@dataclass(frozen=True)
class TlsFiles:
    """A certificate authority and a server certificate it signed (PEM files)."""

    ca_file: Path
    certfile: Path
    keyfile: Path


@dataclass
class Stack:
    backend: str
    workdir: Path
    database_url: str = ""
    pg_database: str | None = None
    router_port: int = field(default_factory=free_port)
    ports: dict[str, int] = field(default_factory=lambda: {s: free_port() for s in SERVICES})
    tickets: dict[str, str] = field(
        default_factory=lambda: {s: secrets.token_urlsafe(24) for s in SERVICES}
    )
    internal_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """What a scraper shows the gateway's /metrics (``metrics_headers``)."""
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    only: tuple[str, ...] = tuple(SERVICES)
    """The services to start (all of them unless a benchmark needs fewer)."""
    listen_host: str = "127.0.0.1"
    """Where the router and the services listen. ``0.0.0.0`` makes them reachable from the
    testbed's nodes too (at its bridge's address); the URLs below stay on 127.0.0.1."""
    pg_port: int = PG_PORT
    """The PostgreSQL server of the ``postgresql`` backend."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Settings of this stack's own (e.g. a short node loss window for a fault test)."""
    tls: TlsFiles | None = None
    """Serve the router (wss://) and the gateway (https://) with this certificate; the
    services and agents trust its authority (tests/security/test_tls.py)."""
    replicas: dict[str, int] = field(default_factory=dict)
    """How many replicas of a service to run (one unless given); each listens on a port of
    its own, and the services' URL settings list them all (see ServiceClient)."""
    router: ManagedProcess | None = None
    services: dict[str, ManagedProcess] = field(default_factory=dict)
    """The first replica of each service."""
    more_replicas: dict[str, list[ManagedProcess]] = field(default_factory=dict)
    """The second and later replicas, with their ports in ``replica_ports``."""
    replica_ports: dict[str, list[int]] = field(default_factory=dict)

    @property
    def router_url(self) -> str:
        scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.router_port}/ws"

    def _scheme(self, service: str) -> str:
        return "https" if self.tls is not None and service == "gateway" else "http"

    def url(self, service: str) -> str:
        return f"{self._scheme(service)}://127.0.0.1:{self.ports[service]}"

    def urls(self, service: str) -> list[str]:
        """Every replica's URL, the first one's first."""
        more = self.replica_ports.get(service, [])
        scheme = self._scheme(service)
        return [self.url(service), *(f"{scheme}://127.0.0.1:{port}" for port in more)]

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client checks the gateway's certificate against."""
        if self.tls is None:
            return True
        return ssl.create_default_context(cafile=str(self.tls.ca_file))

    def metrics_headers(self, service: str) -> dict[str, str]:
        """What a scraper sends to ``service``'s /metrics: the gateway's asks for a token."""
        if service != "gateway":
            return {}
        return {"Authorization": f"Bearer {self.metrics_token}"}

    def _listed(self, service: str) -> str:
        return ",".join(self.urls(service))

    def env(self) -> dict[str, str]:
        """Environment every process of the stack shares."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.workdir),
            "EDGECLOUD_ENV": "test",
            # JSON lines, as in production: tests follow a request id through the logs.
            "EDGECLOUD_LOG_JSON": "true",
            "EDGECLOUD_VAR_DIR": str(self.workdir / "var"),
            "EDGECLOUD_ROUTER_URL": self.router_url,
            "EDGECLOUD_HOST": self.listen_host,
            "GATEWAY_PUBLIC_URL": self.url("gateway"),
            "EDGECLOUD_INTERNAL_SECRET": self.internal_secret,
            "GATEWAY_METRICS_TOKEN": self.metrics_token,
            "EDGECLOUD_ADMIN_USER": "admin",
            "EDGECLOUD_ADMIN_PASSWORD": self.admin_password,
            "GATEWAY_REGISTRY_URL": self._listed("registry"),
            "GATEWAY_ORCHESTRATOR_URL": self._listed("orchestrator"),
            "GATEWAY_STORAGE_URL": self._listed("storage"),
            "GATEWAY_SCHEDULER_URL": self._listed("migration-scheduler"),
            "ORCHESTRATOR_STORAGE_URL": self._listed("storage"),
            "ORCHESTRATOR_REGISTRY_URL": self._listed("registry"),
            "ORCHESTRATOR_REDELIVERY_INTERVAL_S": "1",
            "MIGRATION_SCHEDULER_REGISTRY_URL": self._listed("registry"),
            "MIGRATION_SCHEDULER_ORCHESTRATOR_URL": self._listed("orchestrator"),
            # The stalled-upload test waits this long for the storage to give up.
            "STORAGE_UPLOAD_IDLE_TIMEOUT_S": "2",
            "GATEWAY_PUBLIC_ROUTER_URL": self.router_url,
            # Short liveness windows keep the tests quick.
            "REGISTRY_LIVENESS_SWEEP_INTERVAL_S": "0.2",
            "REGISTRY_METRICS_SAMPLE_INTERVAL_S": "0",
            "REGISTRY_ALERT_INTERVAL_S": "0.5",
            "REGISTRY_ALERT_WEBHOOK_BACKOFF_S": "0.2",
            # The tests' webhook receivers listen on 127.0.0.1.
            "REGISTRY_ALERT_WEBHOOK_PRIVATE_TARGETS": "true",
            # Tests make many requests per minute; the rate quota test sets its own.
            "GATEWAY_DEFAULT_QUOTA_API_PER_MINUTE": "100000",
            # Quick throttling for the tests of it; every test runs from 127.0.0.1, so the
            # per-address limit is tested in process (tests/gateway).
            "GATEWAY_THROTTLE_PAIR_FREE_FAILURES": "3",
            "GATEWAY_THROTTLE_ACCOUNT_FREE_FAILURES": "6",
            "GATEWAY_THROTTLE_ADDRESS_FREE_FAILURES": "100000",
            # A quiet shell is closed soon enough for its test to wait for it.
            "GATEWAY_SHELL_IDLE_TIMEOUT_S": "8",
            # The slow-client test waits this long for silent connections to be closed.
            "EDGECLOUD_HTTP_HEAD_TIMEOUT_S": "4",
        }
        if any(count > 1 for count in self.replicas.values()):
            # Ten processes on the machine's one PostgreSQL (max_connections 100).
            env["EDGECLOUD_DATABASE_POOL_SIZE"] = "3"
        if self.tls is not None:
            env.update(
                {
                    "EDGECLOUD_ROUTER_TLS_CERTFILE": str(self.tls.certfile),
                    "EDGECLOUD_ROUTER_TLS_KEYFILE": str(self.tls.keyfile),
                    "GATEWAY_TLS_CERTFILE": str(self.tls.certfile),
                    "GATEWAY_TLS_KEYFILE": str(self.tls.keyfile),
                    "EDGECLOUD_CA_FILE": str(self.tls.ca_file),
                    "AGENT_CA_FILE": str(self.tls.ca_file),
                }
            )
        env.update(self.extra_env)
        if self.database_url:
            env["EDGECLOUD_DATABASE_URL"] = self.database_url
        for service, ticket in self.tickets.items():
            env[f"{prefix(service)}_WAMP_TICKET"] = ticket
            env[f"{prefix(service)}_PORT"] = str(self.ports[service])
        return env

    @contextmanager
    def running(self) -> Iterator["Stack"]:
        """Started for the block, stopped after it whatever happened (a start that fails
        halfway stops what it started)."""
        try:
            yield self.start()
        finally:
            self.stop()

    def start(self) -> "Stack":
        if self.backend == "postgresql":
            self.pg_database = create_pg_database(self.pg_port)
            self.database_url = (
                f"postgresql+asyncpg://postgres@127.0.0.1:{self.pg_port}/{self.pg_database}"
            )
        for service, count in self.replicas.items():
            self.replica_ports[service] = [free_port() for _ in range(count - 1)]
        self.start_router()
        for service in self.only:
            self.services[service] = self._replica_process(service, 1).start()
            self.more_replicas[service] = [
                self._replica_process(service, number).start()
                for number in range(2, self.replicas.get(service, 1) + 1)
            ]
        for service, process in self.services.items():
            wait_healthy(self.url(service), process, verify=self.verify)
            for url, replica in zip(
                self.urls(service)[1:], self.more_replicas[service], strict=True
            ):
                wait_healthy(url, replica, verify=self.verify)
        return self

    def _replica_process(self, service: str, number: int) -> ManagedProcess:
        """Replica ``number`` (from 1) of a service, not started."""
        env = self.env()
        name = service if number == 1 else f"{service}-{number}"
        if number > 1:
            env[f"{prefix(service)}_PORT"] = str(self.replica_ports[service][number - 2])
        return ManagedProcess(
            name, [str(PYTHON), "-m", SERVICES[service]], env, self.workdir / "logs" / f"{name}.log"
        )

    def replica(self, service: str, number: int) -> ManagedProcess:
        return self.services[service] if number == 1 else self.more_replicas[service][number - 2]

    def restart_replica(self, service: str, number: int) -> None:
        """Start a replica (killed by a test) again on its own port, and wait until healthy."""
        self.replica(service, number).stop()  # reaps the killed one
        process = self._replica_process(service, number).start()
        if number == 1:
            self.services[service] = process
        else:
            self.more_replicas[service][number - 2] = process
        wait_healthy(self.urls(service)[number - 1], process, verify=self.verify)

    def start_router(self) -> None:
        cbdir = self.workdir / "router"
        self.router = ManagedProcess(
            "router",
            [
                str(ROUTER_PYTHON),
                str(ROOT / "infra/router/launch.py"),
                "--cbdir",
                str(cbdir),
                "--host",
                self.listen_host,
                "--port",
                str(self.router_port),
            ],
            self.env(),
            self.workdir / "logs" / "router.log",
        ).start()
        wait_port(self.router_port, self.router, timeout=60)

    def restart_router(
        self, *, down_for: float = 0.0, while_down: "Callable[[], object] | None" = None
    ) -> None:
        """Stop the router, optionally act while it is down, start it again, and wait until
        every service has rejoined (its /healthz reports the WAMP session up)."""
        assert self.router is not None
        self.router.stop()
        try:
            if while_down is not None:
                while_down()
            time.sleep(down_for)
        finally:
            self.start_router()
            for service, process in self.services.items():
                wait_healthy(self.url(service), process, verify=self.verify)
                for url, replica in zip(
                    self.urls(service)[1:], self.more_replicas.get(service, []), strict=True
                ):
                    wait_healthy(url, replica, verify=self.verify)

    def stop(self) -> None:
        for process in self.services.values():
            process.stop()
        for replicas in self.more_replicas.values():
            for process in replicas:
                process.stop()
        if self.router is not None:
            self.router.stop()
        if self.pg_database:
            drop_pg_database(self.pg_database, self.pg_port)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
