from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


class StorageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STORAGE_", extra="ignore")
    service_name: ClassVar[str] = "storage"
    default_port: ClassVar[int] = 8003
