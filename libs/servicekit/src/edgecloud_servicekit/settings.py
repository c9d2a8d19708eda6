"""Settings every service shares.

Each service subclasses :class:`ServiceSettings` with its own prefix (``REGISTRY_``...).
Every field can also be set with the platform-wide ``EDGECLOUD_`` prefix, which is how
one ``EDGECLOUD_DATABASE_URL`` switches all services to PostgreSQL at once; the
service's own prefix wins.

Outside development mode every secret must be set, must not be one of the well-known
development values (they are in this repository for anyone to read), and must be long
enough to resist guessing; the error names the variable to fix.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from edgecloud_contracts.uris import SERVICE_AUTHIDS


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def development_ticket(service: str) -> str:
    """The well-known development ticket; infra/router/launch.py uses the same rule."""
    return f"dev-ticket-{service}"


DEVELOPMENT_INTERNAL_SECRET = "dev-internal-secret-not-for-production"
DEVELOPMENT_SECRETS = frozenset(
    {DEVELOPMENT_INTERNAL_SECRET, *(development_ticket(name) for name in SERVICE_AUTHIDS)}
)
"""Values published in this repository: refused for any secret outside development."""
MIN_TICKET_LENGTH = 24
MIN_INTERNAL_SECRET_LENGTH = 32


def refuse_weak_secret(
    variable: str, value: str, *, min_length: int, known: Iterable[str] = DEVELOPMENT_SECRETS
) -> None:
    """Raise ValueError naming ``variable`` when ``value`` is a published development value
    or shorter than ``min_length``."""
    if value in frozenset(known):
        raise ValueError(f"{variable} is a development default; set a secret of your own")
    if len(value) < min_length:
        raise ValueError(f"{variable} must be at least {min_length} characters")


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The certificate (PEM, with its chain) and key a service serves HTTPS with."""

    certfile: Path
    keyfile: Path


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    service_name: ClassVar[str]
    default_port: ClassVar[int]

    env: Environment = Environment.PRODUCTION
    var_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 0
    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1, le=100)
    """Connections each process keeps to PostgreSQL, and as many more at a peak: all replicas
    of all services together (2 x this each) must stay under the server's max_connections."""
    router_url: str = "ws://127.0.0.1:8080/ws"
    realm: str = "edgecloud"
    wamp_ticket: SecretStr | None = None
    """This service's ticket at the router (``<SERVICE>_WAMP_TICKET``, the variable the
    router's launcher reads too); at least 24 characters outside development."""
    wamp_call_timeout_s: float = 10.0
    ca_file: Path | None = None
    """PEM file of the certificate authorities trusted for a ``wss://`` router_url (a
    private CA, a self-signed certificate); unset: the system's. The router's certificate
    is always verified, host name included."""
    internal_secret: SecretStr | None = None
    """Signs the caller identity passed between services (``EDGECLOUD_INTERNAL_SECRET``,
    the same in every service); at least 32 characters outside development."""
    log_level: str = "INFO"
    log_json: bool = False
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """The largest request body a route takes unless it sets its own ``max_body_size``
    (uploads do); a larger one is refused (413) before it is read."""
    http_head_timeout_s: float = Field(default=10.0, gt=0)
    """How long a client has to send a request's line and headers, from opening the
    connection or from the previous answer: a slow or silent client is disconnected."""
    http_body_stall_timeout_s: float = Field(default=60.0, gt=0)
    """How long a request body may stop coming (while the service waits for it) before the
    connection is closed."""
    max_connections: int = Field(default=1000, ge=10)
    """Connections (and requests in progress) the process serves at once; beyond it, 503."""
    metrics_token: SecretStr | None = None
    """A bearer token ``GET /metrics`` asks for (``<SERVICE>_METRICS_TOKEN``, or
    ``EDGECLOUD_METRICS_TOKEN`` for all); unset: see ``metrics_need_token``."""
    metrics_need_token: ClassVar[bool] = False
    """Whether /metrics is served only with ``metrics_token`` (a service on a public port:
    the gateway); otherwise, without a token, anyone reaching the port may scrape it (the
    internal services, whose ports are internal)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        platform_env = EnvSettingsSource(settings_cls, env_prefix="EDGECLOUD_")
        return init_settings, env_settings, platform_env, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _fill_defaults_and_refuse_missing_secrets(self) -> "ServiceSettings":
        if not self.port:
            self.port = self.default_port
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir}/{self.service_name}.db"
        development = self.env is Environment.DEVELOPMENT
        if self.wamp_ticket is None:
            if not development:
                raise ValueError(f"{self.ticket_variable()} must be set outside development")
            self.wamp_ticket = SecretStr(development_ticket(self.service_name))
        elif not development:
            refuse_weak_secret(
                self.ticket_variable(),
                self.wamp_ticket.get_secret_value(),
                min_length=MIN_TICKET_LENGTH,
            )
        if self.internal_secret is None:
            if not development:
                raise ValueError("EDGECLOUD_INTERNAL_SECRET must be set outside development")
            self.internal_secret = SecretStr(DEVELOPMENT_INTERNAL_SECRET)
        elif not development:
            refuse_weak_secret(
                "EDGECLOUD_INTERNAL_SECRET",
                self.internal_secret.get_secret_value(),
                min_length=MIN_INTERNAL_SECRET_LENGTH,
            )
        if self.metrics_token is not None and not development:
            refuse_weak_secret(
                f"{self.service_name.upper().replace('-', '_')}_METRICS_TOKEN",
                self.metrics_token.get_secret_value(),
                min_length=MIN_TICKET_LENGTH,
            )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"EDGECLOUD_CA_FILE: {self.ca_file} is not a file")
        return self

    def server_tls(self) -> ServerTls | None:
        """HTTPS for this service's own port; None (plain HTTP) unless a service offers it."""
        return None

    @classmethod
    def ticket_variable(cls) -> str:
        return f"{cls.service_name.upper().replace('-', '_')}_WAMP_TICKET"

    @property
    def ticket(self) -> str:
        assert self.wamp_ticket is not None
        return self.wamp_ticket.get_secret_value()

    @property
    def secret(self) -> str:
        assert self.internal_secret is not None
        return self.internal_secret.get_secret_value()
