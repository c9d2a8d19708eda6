from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


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
