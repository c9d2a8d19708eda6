from typing import ClassVar

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import Environment, ServiceSettings


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")
    service_name: ClassVar[str] = "registry"
    default_port: ClassVar[int] = 8001

    missed_heartbeats: int = 3
    """A device is offline after this many heartbeat intervals without one."""
    liveness_sweep_interval_s: float = 1.0
    heartbeat_batch_max: int = 500
    heartbeat_queue_max: int = 20_000
    metrics_sample_interval_s: float = 10.0
    """At most one metrics point per device per this many seconds (graphs need no more)."""
    metrics_retention_days: float = 7.0
    status_history_retention_days: float = 30.0

    alert_interval_s: float = 5.0
    """How often every alert rule is evaluated."""
    alert_rules_per_tenant: int = 500
    alert_webhook_timeout_s: float = 5.0
    alert_webhook_attempts: int = 3
    alert_webhook_backoff_s: float = 1.0
    """The wait before the second attempt; it doubles for each further one."""
    alert_webhook_private_targets: bool | None = None
    """Whether webhooks may post to loopback and private addresses (the cloud's own
    network); by default only in development."""

    @model_validator(mode="after")
    def _private_webhooks_in_development_only(self) -> "RegistrySettings":
        if self.alert_webhook_private_targets is None:
            self.alert_webhook_private_targets = self.env is Environment.DEVELOPMENT
        return self
