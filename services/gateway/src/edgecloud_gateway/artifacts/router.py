"""Public REST: artifacts, streamed to and from the storage; every change audited.

Bodies pass through in chunks both ways, so a 4 GiB upload costs the gateway no more
memory than a small one; the storage enforces sizes, ranges and quotas.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from edgecloud_contracts.artifacts import (
    CREATE_ARTIFACT_OPENAPI,
    ArtifactKind,
    ArtifactPage,
    ArtifactView,
    StorageUsage,
)
from edgecloud_contracts.log_segments import SEGMENT_PATH, SegmentStored
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.internal_http import passed_on

from ..audit.trail import AuditDep, record_success
from ..deps import IdentityDep, PathId, SessionDep, StorageDep

router = APIRouter(prefix="/api/v1", tags=["artifacts"])
# The storage applies its own limits; this only lets large bodies reach it.
UPLOAD_BODY_LIMIT = 8 << 30


@router.post(
    "/artifacts",
    status_code=status.HTTP_201_CREATED,
    response_model=ArtifactView,
    openapi_extra=CREATE_ARTIFACT_OPENAPI,
    max_body_size=UPLOAD_BODY_LIMIT,
)
async def create_artifact(
    request: Request,
    identity: IdentityDep,
    storage: StorageDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Announce an upload (JSON ``{name, size, sha256, kind}``; the bytes follow with
    ``PATCH``), or upload a small file in one request (``multipart/form-data``, field
    ``file``)."""
    entry = trail.begin("artifact.create", target="artifact", caller=identity)
    answer = await storage.relay(request, "/v1/artifacts", identity=identity)
    created = answer.json()
    entry.target = f"artifact:{created['id']}"
    trail.note(name=created["name"], size=created["size"], kind=created["kind"])
    record_success(session, trail)
    return passed_on(answer)


@router.get("/artifacts", response_model=ArtifactPage)
async def list_artifacts(
    identity: IdentityDep,
    storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    kind: ArtifactKind | None = None,
    container: Annotated[str | None, Query(max_length=64, pattern=OBJECT_ID)] = None,
) -> Response:
    params = {"limit": limit, "cursor": cursor, "kind": kind, "container": container}
    return passed_on(
        await storage.request("GET", "/v1/artifacts", identity=identity, params=params)
    )


@router.get("/artifacts/usage", response_model=StorageUsage)
async def usage(identity: IdentityDep, storage: StorageDep) -> Response:
    """Bytes the tenant's artifacts take, and its quota."""
    return passed_on(await storage.request("GET", "/v1/artifacts/usage", identity=identity))


@router.get("/artifacts/{artifact_id}", response_model=ArtifactView)
async def get_artifact(artifact_id: PathId, identity: IdentityDep, storage: StorageDep) -> Response:
    return passed_on(
        await storage.request("GET", f"/v1/artifacts/{artifact_id}", identity=identity)
    )


@router.patch(
    "/artifacts/{artifact_id}",
    response_model=ArtifactView,
    responses={204: {"description": "stored; the upload goes on from Upload-Offset"}},
    max_body_size=UPLOAD_BODY_LIMIT,
)
async def upload_piece(
    artifact_id: PathId, request: Request, identity: IdentityDep, storage: StorageDep
) -> Response:
    """Raw bytes with ``Content-Range: bytes a-b/size``. 204 with ``Upload-Offset`` while
    the upload goes on, 200 with the artifact once its last byte is in and its SHA-256
    checked. ``Content-Range: bytes */size`` with no body asks where to continue."""
    return await storage.forward(request, f"/v1/artifacts/{artifact_id}", identity=identity)


@router.get(
    "/artifacts/{artifact_id}/content",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "the requested range"},
    },
)
async def download(
    artifact_id: PathId, request: Request, identity: IdentityDep, storage: StorageDep
) -> Response:
    """The artifact's bytes; ``Range: bytes=a-b`` gets that part (206)."""
    return await storage.forward(request, f"/v1/artifacts/{artifact_id}/content", identity=identity)


@router.delete("/artifacts/{artifact_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_artifact(
    artifact_id: PathId,
    identity: IdentityDep,
    storage: StorageDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    trail.begin("artifact.delete", target=f"artifact:{artifact_id}", caller=identity)
    await storage.request("DELETE", f"/v1/artifacts/{artifact_id}", identity=identity)
    record_success(session, trail)
    return Response(status_code=204)


# Transfers: nodes fetch and send artifacts with a grant in the URL, not a user's token.

_GRANT = Annotated[str, Query(min_length=1, max_length=2000)]


@router.get(
    "/transfers/{artifact_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {}},
    tags=["transfers"],
)
async def transfer_download(
    artifact_id: PathId, grant: _GRANT, request: Request, storage: StorageDep
) -> Response:
    return await storage.forward(
        request, f"/v1/transfers/{artifact_id}", identity=None, params={"grant": grant}
    )


@router.get("/transfers/{artifact_id}/status", response_model=ArtifactView, tags=["transfers"])
async def transfer_status(
    artifact_id: PathId, grant: _GRANT, request: Request, storage: StorageDep
) -> Response:
    return await storage.forward(
        request, f"/v1/transfers/{artifact_id}/status", identity=None, params={"grant": grant}
    )


@router.patch(
    "/transfers/{artifact_id}",
    response_model=ArtifactView,
    responses={204: {"description": "stored; the upload goes on from Upload-Offset"}},
    max_body_size=UPLOAD_BODY_LIMIT,
    tags=["transfers"],
)
async def transfer_upload(
    artifact_id: PathId, grant: _GRANT, request: Request, storage: StorageDep
) -> Response:
    return await storage.forward(
        request, f"/v1/transfers/{artifact_id}", identity=None, params={"grant": grant}
    )


@router.post(
    f"/transfers/{{container_id}}/{SEGMENT_PATH}", response_model=SegmentStored, tags=["transfers"]
)
async def transfer_log_segment(
    container_id: PathId, grant: _GRANT, request: Request, storage: StorageDep
) -> Response:
    """A node ships a segment of a running container's output (a grant for that container)."""
    return await storage.forward(
        request,
        f"/v1/transfers/{container_id}/{SEGMENT_PATH}",
        identity=None,
        params={"grant": grant},
    )
