"""Settings every service shares.

Each service subclasses :class:`ServiceSettings` with its own prefix (``REGISTRY_``...).
Every field can also be set with the platform-wide ``EDGECLOUD_`` prefix, which is how
one ``EDGECLOUD_DATABASE_URL`` switches all services to PostgreSQL at once; the
service's own prefix wins.
"""

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


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def development_ticket(service: str) -> str:
    """The well-known development ticket; infra/router/launch.py uses the same rule."""
    return f"dev-ticket-{service}"


DEVELOPMENT_INTERNAL_SECRET = "dev-internal-secret-not-for-production"


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
    wamp_call_timeout_s: float = 10.0
    internal_secret: SecretStr | None = None
    log_level: str = "INFO"
    log_json: bool = False

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
        if self.internal_secret is None:
            if not development:
                raise ValueError("EDGECLOUD_INTERNAL_SECRET must be set outside development")
            self.internal_secret = SecretStr(DEVELOPMENT_INTERNAL_SECRET)
        elif not development and len(self.internal_secret.get_secret_value()) < 32:
            raise ValueError("EDGECLOUD_INTERNAL_SECRET must be at least 32 characters")
        return self

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
