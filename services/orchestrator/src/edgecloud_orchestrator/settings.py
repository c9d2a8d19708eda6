from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")
    service_name: ClassVar[str] = "orchestrator"
    default_port: ClassVar[int] = 8002
