from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import Environment, ServiceSettings

from .accounts.service import TenantQuotas
from .accounts.throttle import ThrottlePolicy

DEVELOPMENT_ADMIN_PASSWORD = "admin"


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    service_name: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = 8000

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

    admin_user: str = "admin"
    admin_password: SecretStr | None = None
    admin_tenant: str = "operators"
    login_token_hours: float = 12.0
    cookie_secure: bool | None = None
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

    throttle_account_free_failures: int = 5
    throttle_account_lock_after: int = 10
    throttle_address_free_failures: int = 20
    throttle_address_lock_after: int = 50
    throttle_window_minutes: float = 15
    throttle_lock_minutes: float = 15

    @model_validator(mode="after")
    def _admin_and_cookies(self) -> "GatewaySettings":
        development = self.env is Environment.DEVELOPMENT
        if self.admin_password is None and development:
            self.admin_password = SecretStr(DEVELOPMENT_ADMIN_PASSWORD)
        password = self.admin_password
        if password is not None and not development and len(password.get_secret_value()) < 12:
            raise ValueError("EDGECLOUD_ADMIN_PASSWORD must be at least 12 characters")
        if self.cookie_secure is None:
            self.cookie_secure = not development and self.env is not Environment.TEST
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        return self

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
    def throttle_policies(self) -> dict[str, ThrottlePolicy]:
        window = timedelta(minutes=self.throttle_window_minutes)
        lock_for = timedelta(minutes=self.throttle_lock_minutes)
        return {
            "account": ThrottlePolicy(
                self.throttle_account_free_failures,
                self.throttle_account_lock_after,
                window,
                lock_for,
            ),
            "address": ThrottlePolicy(
                self.throttle_address_free_failures,
                self.throttle_address_lock_after,
                window,
                lock_for,
            ),
        }
