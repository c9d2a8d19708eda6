"""Artifacts (application archives, scripts, image archives, logs, result files) and the
deployments that bring an application onto a node, as services, agents and clients see them.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from .heartbeat import WireModel
from .ids import IDENTIFIER, DockerName, Identifier
from .text import OBJECT_ID

SHA256_PATTERN = r"^[a-f0-9]{64}$"
# A file name, not a path (it starts with a letter or digit: never "." or ".."): it ends
# up as a file inside containers and in downloads.
ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.+,=@()-]{0,199}$"

Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN, description="lowercase hex SHA-256")]
ArtifactName = Annotated[
    str,
    Field(
        pattern=ARTIFACT_NAME_PATTERN,
        description="a file name: letters, digits, space and _ . + , = @ ( ) -",
    ),
]


class ArtifactKind(StrEnum):
    APPLICATION = "application"
    """A .tar (or .tar.gz) of the application's files."""
    SCRIPT = "script"
    """The command script that runs the application."""
    IMAGE = "image"
    """A container image in ``docker save`` format."""
    LOG = "log"
    """A container's output, shipped from its node."""
    RESULT = "result"
    """Files copied out of a container (a tar)."""
    FILE = "file"


class ArtifactState(StrEnum):
    UPLOADING = "uploading"
    COMPLETE = "complete"


class CreateArtifact(WireModel):
    """Announce an upload: its bytes follow in ``PATCH`` requests."""

    name: ArtifactName
    size: Annotated[int, Field(ge=0, description="bytes")]
    sha256: Sha256
    kind: ArtifactKind = ArtifactKind.FILE


# OpenAPI for POST /artifacts, which takes JSON or a one-request upload.
CREATE_ARTIFACT_OPENAPI = {
    "requestBody": {
        "content": {
            "application/json": {"schema": CreateArtifact.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "kind": {"type": "string", "enum": [k.value for k in ArtifactKind]},
                    },
                    "required": ["file"],
                }
            },
        },
        "required": True,
    }
}


class ArtifactView(WireModel):
    id: str
    name: str
    kind: ArtifactKind
    state: ArtifactState
    size: int | None
    """None until an uploader that did not announce it sends its first bytes."""
    received: int
    """Bytes stored so far: an interrupted upload resumes from here."""
    sha256: str | None
    owner: str
    container: str | None = None
    """The container it came from (logs, result files)."""
    created_at: datetime
    completed_at: datetime | None = None
    upload_url: str | None = None
    """Where to ``PATCH`` the bytes while uploading."""
    content_url: str | None = None
    """Where to ``GET`` the bytes once complete."""


class ArtifactPage(WireModel):
    items: list[ArtifactView]
    next_cursor: str | None


class StorageUsage(WireModel):
    used_bytes: int
    quota_bytes: int | None


# Deployments: an application archive and its script, brought into a container.


class DeploymentState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    EXTRACTING = "extracting"
    COPYING = "copying"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


DEPLOYMENT_DONE = frozenset({DeploymentState.SUCCEEDED, DeploymentState.FAILED})


class Deploy(WireModel):
    """``POST /containers/{id}/deploy``: artifact ids of the archive and of the script."""

    artifact: Annotated[str, Field(min_length=1, max_length=64, pattern=OBJECT_ID)]
    script: Annotated[str, Field(min_length=1, max_length=64, pattern=OBJECT_ID)]


TRANSFERS_PATH = "/api/v1/transfers"
"""Where a node moves an artifact's bytes, under the platform's public API address."""
TRANSFER_URL_PATTERN = rf"^(?:{TRANSFERS_PATH}/{IDENTIFIER}\?grant=[A-Za-z0-9_.-]{{1,4096}})?$"

TransferUrl = Annotated[
    str,
    Field(
        pattern=TRANSFER_URL_PATTERN,
        description=f"{TRANSFERS_PATH}/<artifact id>?grant=<grant>, relative to the API address",
    ),
]
"""A transfer's URL relative to the platform's public API address: never absolute, never
another host or path. Empty while the command waits in the orchestrator's queue (the grant
is signed when it is sent); a node refuses an empty one."""


class TransferRef(WireModel):
    """One artifact a node fetches: where, and what it must turn out to be."""

    artifact_id: Identifier
    name: ArtifactName
    """A file name on the node (a deployment's script is copied under it)."""
    size: Annotated[int, Field(ge=0)]
    sha256: Sha256
    url: TransferUrl
    """Relative to the platform's public API address, carrying a short-lived grant."""


class DeploymentOrder(WireModel):
    """What a node is told to do for a deployment (the payload of its deploy command)."""

    deployment_id: Identifier
    """The name of the deployment's work directory on the node."""
    container_id: Identifier
    docker_name: DockerName
    archive: TransferRef
    script: TransferRef


class DeploymentStep(WireModel):
    name: str
    """``download``, ``verify``, ``extract``, ``copy``, ``run``."""
    started_at: datetime
    duration_ms: float | None = None
    detail: str | None = None


class DeploymentReport(WireModel):
    """A node's news about a deployment: a step begun or ended, progress, the end."""

    deployment_id: str
    state: DeploymentState
    step: DeploymentStep | None = None
    received: int | None = None
    total: int | None = None
    exit_code: int | None = None
    error_code: str | None = None
    error: Annotated[str, Field(max_length=2000)] | None = None


class DeploymentView(WireModel):
    id: str
    container: str
    device: str
    artifact: str
    script: str
    state: DeploymentState
    steps: list[DeploymentStep]
    received: int | None = None
    total: int | None = None
    exit_code: int | None = None
    error_code: str | None = None
    error: str | None = None
    command: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
