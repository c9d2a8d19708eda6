from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


class MigrationSchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MIGRATION_SCHEDULER_", extra="ignore")
    service_name: ClassVar[str] = "migration-scheduler"
    default_port: ClassVar[int] = 8004
