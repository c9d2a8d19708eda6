from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from edgecloud_servicekit.settings import ServiceSettings


class StorageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STORAGE_", extra="ignore")
    service_name: ClassVar[str] = "storage"
    default_port: ClassVar[int] = 8003

    backend: Literal["filesystem", "s3"] = "filesystem"
    """Where blobs live: local files, or an S3-compatible object store (for replicas on
    several machines)."""
    s3_endpoint_url: str | None = None
    s3_bucket: str = "edgecloud-artifacts"
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
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
    log_retention_h: float = Field(default=168.0, gt=0)
    """Containers' shipped log segments are kept this long after they arrive (then swept),
    whatever became of the container or its node."""
    log_sweep_interval_s: float = Field(default=600.0, gt=0)

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir or self.var_dir / "artifacts"
