from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import (
    DEVELOPMENT_SECRETS,
    Environment,
    ServerTls,
    ServiceSettings,
    refuse_weak_secret,
)

from .access.live import EVENTS, LOG_FOLLOW, SHELL, Shares
from .accounts import throttle
from .accounts.service import TenantQuotas
from .accounts.throttle import ThrottlePolicy

DEVELOPMENT_ADMIN_PASSWORD = "admin"
MIN_ADMIN_PASSWORD_LENGTH = 12


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    service_name: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = 8000
    # Its port is public: /metrics (the load of every route, the streams open, the queues)
    # only for a scraper holding the token.
    metrics_need_token: ClassVar[bool] = True

    registry_url: str = "http://127.0.0.1:8001"
    """Each service URL here may list replicas, comma-separated (one load-balanced URL
    does as well): see edgecloud_servicekit.internal_http."""
    orchestrator_url: str = "http://127.0.0.1:8002"
    storage_url: str = "http://127.0.0.1:8003"
    scheduler_url: str = "http://127.0.0.1:8004"
    """The migration-scheduler's internal REST API."""
    public_url: str = ""
    """Where users reach the gateway; shown in enrolment instructions."""
    public_router_url: str = "ws://127.0.0.1:8080/ws"
    """Where agents reach the router; shown in enrolment instructions."""

    tls_certfile: Path | None = None
    """PEM certificate (with its chain) to serve HTTPS with (``GATEWAY_TLS_CERTFILE``);
    unset: plain HTTP, for a gateway behind a TLS-terminating proxy or in development."""
    tls_keyfile: Path | None = None
    """The certificate's private key (``GATEWAY_TLS_KEYFILE``); both or neither."""

    admin_user: str = "admin"
    admin_password: SecretStr | None = None
    """The bootstrap operator's password (``EDGECLOUD_ADMIN_PASSWORD``); no bootstrap
    account when unset outside development, and at least 12 characters."""
    admin_tenant: str = "operators"
    login_token_hours: float = 12.0
    cookie_secure: bool | None = None
    """Mark the dashboard's cookies Secure; by default when serving HTTPS and outside
    development and test mode."""
    registration: Literal["open", "invite"] = "open"
    """open: anyone may sign up and gets a tenant of their own; invite: invitations only."""

    default_quota_containers: int = 20
    default_quota_storage_bytes: int = 10 << 30
    default_quota_api_per_minute: int = 600

    shell_max_per_tenant: int = 4
    """Interactive shells a tenant may have open at once, over all its users."""
    shell_idle_timeout_s: float = 900.0
    """A shell nobody typed into for this long is closed."""
    shell_max_duration_s: float = 8 * 3600.0
    shell_keepalive_s: float = 30.0
    """How often a quiet shell tells its node it is still wanted (the node's lease is three
    times this) and marks itself alive for the tenant's count."""

    # Long-lived connections (event streams, followed logs, shells) on one replica: per user
    # and per tenant of each kind, and all of them together (see access/live.py).
    live_events_per_user: int = Field(default=5, ge=1)
    live_events_per_tenant: int = Field(default=20, ge=1)
    live_log_follows_per_user: int = Field(default=5, ge=1)
    live_log_follows_per_tenant: int = Field(default=20, ge=1)
    live_shells_per_user: int = Field(default=4, ge=1)
    live_connection_budget: int = Field(default=700, ge=1)
    """All tenants' long-lived connections together; below ``max_connections`` so that
    short requests are always served."""
    live_retry_after_s: int = Field(default=30, ge=1)
    live_recheck_s: float = Field(default=0.5, gt=0)
    """How often the tokens held by open connections are read again: access taken away
    ends them within about this long."""

    # Login throttling (accounts/throttle.py): free failures, then waits doubling up to a
    # ceiling; per account from one client, per client, and per account across clients
    # (which never stops a client with a clean record for the account).
    throttle_pair_free_failures: int = 5
    throttle_pair_max_delay_s: float = 900
    throttle_address_free_failures: int = 30
    throttle_address_max_delay_s: float = 900
    throttle_account_free_failures: int = 100
    throttle_account_max_delay_s: float = 60
    throttle_window_minutes: float = 15

    @model_validator(mode="after")
    def _admin_and_cookies(self) -> "GatewaySettings":
        development = self.env is Environment.DEVELOPMENT
        if self.admin_password is None and development:
            self.admin_password = SecretStr(DEVELOPMENT_ADMIN_PASSWORD)
        password = self.admin_password
        if password is not None and not development:
            refuse_weak_secret(
                "EDGECLOUD_ADMIN_PASSWORD",
                password.get_secret_value(),
                min_length=MIN_ADMIN_PASSWORD_LENGTH,
                known=DEVELOPMENT_SECRETS | {DEVELOPMENT_ADMIN_PASSWORD},
            )
        if self.live_connection_budget >= self.max_connections:
            raise ValueError(
                "GATEWAY_LIVE_CONNECTION_BUDGET must stay below GATEWAY_MAX_CONNECTIONS, "
                "or long-lived connections can take every slot from short requests"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("GATEWAY_TLS_CERTFILE and GATEWAY_TLS_KEYFILE go together")
        for variable, path in (
            ("GATEWAY_TLS_CERTFILE", self.tls_certfile),
            ("GATEWAY_TLS_KEYFILE", self.tls_keyfile),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{variable}: {path} is not a file")
        if self.cookie_secure is None:
            self.cookie_secure = self.tls_certfile is not None or (
                not development and self.env is not Environment.TEST
            )
        if not self.public_url:
            scheme = "https" if self.tls_certfile is not None else "http"
            self.public_url = f"{scheme}://{self.host}:{self.port}"
        return self

    def server_tls(self) -> ServerTls | None:
        if self.tls_certfile is None or self.tls_keyfile is None:
            return None
        return ServerTls(certfile=self.tls_certfile, keyfile=self.tls_keyfile)

    @property
    def login_token_lifetime(self) -> timedelta:
        return timedelta(hours=self.login_token_hours)

    @property
    def default_quotas(self) -> TenantQuotas:
        return TenantQuotas(
            containers=self.default_quota_containers,
            storage_bytes=self.default_quota_storage_bytes,
            api_per_minute=self.default_quota_api_per_minute,
        )

    @property
    def live_shares(self) -> Shares:
        return Shares(
            per_user={
                EVENTS: self.live_events_per_user,
                LOG_FOLLOW: self.live_log_follows_per_user,
                SHELL: self.live_shells_per_user,
            },
            per_tenant={
                EVENTS: self.live_events_per_tenant,
                LOG_FOLLOW: self.live_log_follows_per_tenant,
                # Shells are also counted over all replicas (terminal/sessions.py).
                SHELL: self.shell_max_per_tenant,
            },
            budget=self.live_connection_budget,
            retry_after_s=self.live_retry_after_s,
        )

    @property
    def throttle_policies(self) -> dict[str, ThrottlePolicy]:
        window = timedelta(minutes=self.throttle_window_minutes)
        return {
            throttle.PAIR: ThrottlePolicy(
                self.throttle_pair_free_failures,
                timedelta(seconds=self.throttle_pair_max_delay_s),
                window,
            ),
            throttle.ADDRESS: ThrottlePolicy(
                self.throttle_address_free_failures,
                timedelta(seconds=self.throttle_address_max_delay_s),
                window,
            ),
            throttle.ACCOUNT: ThrottlePolicy(
                self.throttle_account_free_failures,
                timedelta(seconds=self.throttle_account_max_delay_s),
                window,
            ),
        }
