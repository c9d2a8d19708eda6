from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


class StorageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STORAGE_", extra="ignore")
    service_name: ClassVar[str] = "storage"
    default_port: ClassVar[int] = 8003

    data_dir: Path | None = None
    """Where the filesystem backend keeps blobs and partial uploads (default: var_dir/artifacts)."""
    max_artifact_bytes: int = 4 << 30
    """The largest artifact accepted; larger uploads are refused before any byte is read."""
    max_multipart_bytes: int = 32 << 20
    """One-request (multipart/form-data) uploads are for small files."""
    upload_idle_timeout_s: float = 60.0
    """An upload whose bytes stop coming this long is cut there (it resumes later)."""
    upload_ttl_h: float = 24.0
    """An upload left incomplete this long is discarded (and its bytes freed)."""

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir or self.var_dir / "artifacts"
