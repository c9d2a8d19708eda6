"""Internal REST: artifacts on behalf of the gateway's caller, and transfers for nodes
that carry a grant instead of an identity."""

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import Field, ValidationError
from starlette.datastructures import UploadFile

from edgecloud_contracts.artifacts import (
    ARTIFACT_NAME_PATTERN,
    CREATE_ARTIFACT_OPENAPI,
    SHA256_PATTERN,
    ArtifactKind,
    ArtifactName,
    ArtifactPage,
    ArtifactState,
    ArtifactView,
    CreateArtifact,
    StorageUsage,
)
from edgecloud_contracts.heartbeat import WireModel
from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.identity import CallerDep, Identity
from edgecloud_servicekit.problems import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    Problem,
    Unprocessable,
)

from ..grants import granted
from .backends import READ_CHUNK
from .exceptions import ArtifactIncomplete, NodeUploadsOnly, RangeNotSatisfiable
from .models import Artifact
from .service import Artifacts, parse_content_range, to_view

router = APIRouter(prefix="/v1", tags=["artifacts"])
ArtifactId = Annotated[str, Path(max_length=64, pattern=OBJECT_ID)]
# Each PATCH may carry a whole artifact; the store stops at the announced range anyway.
UPLOAD_BODY_LIMIT = 8 << 30


async def _artifacts(request: Request) -> Artifacts:
    artifacts: Artifacts = request.app.state.artifacts
    return artifacts


ArtifactsDep = Annotated[Artifacts, Depends(_artifacts)]


@router.post(
    "/artifacts",
    status_code=status.HTTP_201_CREATED,
    response_model=ArtifactView,
    openapi_extra=CREATE_ARTIFACT_OPENAPI,
    # A one-request upload is checked against max_multipart_bytes by the handler.
    max_body_size=UPLOAD_BODY_LIMIT,
)
async def create_artifact(
    request: Request, caller: CallerDep, artifacts: ArtifactsDep
) -> ArtifactView:
    """Announce an upload (JSON), or upload a small file in one request (multipart)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return to_view(await _upload_small_file(request, caller, artifacts))
    try:
        body = CreateArtifact.model_validate_json(await request.body())
    except ValidationError as err:
        raise _invalid(err) from err
    return to_view(await artifacts.create_from_request(caller, body))


async def _upload_small_file(request: Request, caller: Identity, artifacts: Artifacts) -> Artifact:
    limit = request.app.state.settings.max_multipart_bytes
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit + 64 * 1024:
        raise PayloadTooLarge(
            f"one-request uploads are limited to {limit} bytes; announce larger files with"
            " JSON and send them in pieces",
            code="upload_too_large",
            limit=limit,
        )
    async with request.form(max_files=1, max_fields=4, max_part_size=64 * 1024) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("send the file in a form field named file", code="file_missing")
        kind_field = form.get("kind", ArtifactKind.FILE.value)
        try:
            kind = ArtifactKind(str(kind_field))
            body = CreateArtifact(
                name=upload.filename or "",
                size=upload.size or 0,
                sha256=await _sha256_of(upload),
                kind=kind,
            )
        except (ValueError, ValidationError) as err:
            raise BadRequest(
                f"the file's name or kind is not accepted: {err}"[:500],
                code="invalid_file",
                name_pattern=ARTIFACT_NAME_PATTERN,
            ) from err
        if body.size > limit:
            raise PayloadTooLarge(
                f"one-request uploads are limited to {limit} bytes",
                code="upload_too_large",
                limit=limit,
            )
        row = await artifacts.create_from_request(caller, body)
        if body.size == 0:
            return row
        await upload.seek(0)
        return await artifacts.append(
            tenant_id=caller.tenant_id,
            artifact_id=row.id,
            content_range=parse_content_range(
                f"bytes 0-{body.size - 1}/{body.size}", body_length=None
            ),
            chunks=_chunks_of(upload),
        )


async def _sha256_of(upload: UploadFile) -> str:
    digest = hashlib.sha256()
    while chunk := await upload.read(READ_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


async def _chunks_of(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(READ_CHUNK):
        yield chunk


def _invalid(err: ValidationError) -> Problem:
    fields = sorted({".".join(str(p) for p in e["loc"]) for e in err.errors()})
    return Unprocessable(
        f"invalid fields: {', '.join(fields)}",
        fields=fields,
        errors=[{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors()],
    )


class ExpectArtifact(WireModel):
    """Services announce an artifact a node will upload (a log, result files): its size
    and hash are unknown until the node has read them."""

    name: ArtifactName
    kind: ArtifactKind
    container_id: Annotated[str, Field(min_length=1, max_length=64, pattern=OBJECT_ID)]
    device_key: Annotated[str, Field(pattern=KEY_PATTERN)]


@router.post(
    "/artifacts/expected", status_code=status.HTTP_201_CREATED, response_model=ArtifactView
)
async def expect_artifact(
    body: ExpectArtifact, caller: CallerDep, artifacts: ArtifactsDep
) -> ArtifactView:
    row = await artifacts.create(
        tenant_id=caller.tenant_id,
        owner=caller.username,
        name=body.name,
        kind=body.kind,
        size=None,
        sha256=None,
        container_id=body.container_id,
        device_key=body.device_key,
    )
    return to_view(row)


@router.get("/artifacts", response_model=ArtifactPage)
async def list_artifacts(
    request: Request,
    caller: CallerDep,
    artifacts: ArtifactsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    kind: ArtifactKind | None = None,
    container: Annotated[str | None, Query(max_length=64, pattern=OBJECT_ID)] = None,
) -> ArtifactPage:
    async with request.app.state.sessions() as session:
        rows, next_cursor = await artifacts.list_for(
            session,
            tenant_id=caller.tenant_id,
            limit=limit,
            cursor=cursor,
            kind=kind,
            container_id=container,
        )
    return ArtifactPage(items=[to_view(r) for r in rows], next_cursor=next_cursor)


@router.get("/artifacts/usage", response_model=StorageUsage)
async def usage(request: Request, caller: CallerDep, artifacts: ArtifactsDep) -> StorageUsage:
    await artifacts.remember_quota(caller)
    async with request.app.state.sessions() as session:
        used = await artifacts.usage(session, caller.tenant_id)
        quota = await artifacts.quota(session, caller.tenant_id)
    return StorageUsage(used_bytes=used, quota_bytes=quota)


@router.get("/artifacts/{artifact_id}", response_model=ArtifactView)
async def get_artifact(
    artifact_id: ArtifactId, request: Request, caller: CallerDep, artifacts: ArtifactsDep
) -> ArtifactView:
    async with request.app.state.sessions() as session:
        row = await artifacts.get(session, tenant_id=caller.tenant_id, artifact_id=artifact_id)
    return to_view(row)


@router.patch(
    "/artifacts/{artifact_id}",
    response_model=ArtifactView,
    responses={204: {"description": "stored; the upload goes on (Upload-Offset)"}},
    max_body_size=UPLOAD_BODY_LIMIT,
)
async def upload_piece(
    artifact_id: ArtifactId, request: Request, caller: CallerDep, artifacts: ArtifactsDep
) -> Response:
    """Bytes ``a`` to ``b`` of the artifact (``Content-Range: bytes a-b/size``)."""
    return await _append(request, artifacts, tenant_id=caller.tenant_id, artifact_id=artifact_id)


async def _append(
    request: Request,
    artifacts: Artifacts,
    *,
    tenant_id: str,
    artifact_id: str,
    device_key: str | None = None,
) -> Response:
    """One piece of an upload, from a user (``device_key`` None) or from a node."""
    # Whose it is comes first: another tenant's id is a 404 whatever the headers say.
    async with request.app.state.sessions() as session:
        row = await artifacts.get(session, tenant_id=tenant_id, artifact_id=artifact_id)
    if device_key is not None and row.device_key != device_key:
        raise Forbidden("this artifact is not for that device to upload", code="grant_invalid")
    if device_key is None and row.device_key is not None:
        # Not even "where are we" (it may set the size and hash the node's bytes must match).
        raise NodeUploadsOnly(artifact_id)
    length = request.headers.get("content-length")
    content_range = parse_content_range(
        request.headers.get("content-range"),
        body_length=int(length) if length and length.isdigit() else None,
    )
    declared = request.headers.get("x-content-sha256", "").lower() or None
    if declared is not None and not re.fullmatch(SHA256_PATTERN, declared):
        raise BadRequest("X-Content-SHA256 is not a SHA-256 in hex", code="bad_sha256")
    row = await artifacts.append(
        tenant_id=tenant_id,
        artifact_id=artifact_id,
        content_range=content_range,
        chunks=request.stream(),
        declared_sha256=declared,
    )
    if row.state == ArtifactState.COMPLETE:
        return JSONResponse(to_view(row).model_dump(mode="json"))
    return Response(status_code=204, headers={"Upload-Offset": str(row.received)})


@router.get("/artifacts/{artifact_id}/content")
async def download(
    artifact_id: ArtifactId, request: Request, caller: CallerDep, artifacts: ArtifactsDep
) -> Response:
    """The bytes; a ``Range`` header gets 206 with that part."""
    async with request.app.state.sessions() as session:
        row = await artifacts.get(session, tenant_id=caller.tenant_id, artifact_id=artifact_id)
    return _content(request, artifacts, row)


class BlobResponse(FileResponse):
    # Starlette reads files in 64 KiB pieces, each through a worker thread: for artifacts
    # of many megabytes the hops, not the disk, set the pace.
    chunk_size = 1 << 20


def _content(request: Request, artifacts: Artifacts, row: Artifact) -> Response:
    if row.state != ArtifactState.COMPLETE or row.sha256 is None or row.size is None:
        raise ArtifactIncomplete(row.id)
    headers = {
        "ETag": f'"{row.sha256}"',
        "Content-Disposition": f'attachment; filename="{row.name}"',
        "X-Content-SHA256": row.sha256,
        "Accept-Ranges": "bytes",
    }
    local = artifacts.store.local_path(row.sha256)
    if local is not None:
        # Starlette answers Range requests for files itself (206, 416).
        return BlobResponse(local, media_type="application/octet-stream", headers=headers)
    start, end = _single_range(request.headers.get("range"), row.size)
    status_code = 200
    if (start, end) != (0, row.size):
        status_code = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{row.size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        artifacts.store.read(row.sha256, start, end),
        status_code=status_code,
        media_type="application/octet-stream",
        headers=headers,
    )


def _single_range(header: str | None, size: int) -> tuple[int, int]:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range, as [start, end); no header: everything."""
    if not header:
        return 0, size
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    try:
        if unit.strip() != "bytes" or "," in spec:
            raise ValueError(header)
        if first == "":
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = min(size, int(last) + 1) if last else size
    except ValueError as err:
        raise RangeNotSatisfiable("send one range: bytes=<first>-<last>") from err
    if start >= end:
        raise RangeNotSatisfiable(
            f"the artifact has {size} bytes", headers={"Content-Range": f"bytes */{size}"}
        )
    return start, end


@router.delete("/artifacts/{artifact_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_artifact(
    artifact_id: ArtifactId, caller: CallerDep, artifacts: ArtifactsDep
) -> Response:
    await artifacts.delete(tenant_id=caller.tenant_id, artifact_id=artifact_id)
    return Response(status_code=204)


# Transfers: a node moves one artifact's bytes with the grant the orchestrator gave it.


@router.get("/transfers/{artifact_id}")
async def transfer_download(
    artifact_id: ArtifactId, request: Request, artifacts: ArtifactsDep
) -> Response:
    grant = granted(request, artifact_id, "download")
    async with request.app.state.sessions() as session:
        row = await artifacts.get(session, tenant_id=grant.tenant_id, artifact_id=artifact_id)
    return _content(request, artifacts, row)


@router.get("/transfers/{artifact_id}/status", response_model=ArtifactView)
async def transfer_status(
    artifact_id: ArtifactId, request: Request, artifacts: ArtifactsDep
) -> ArtifactView:
    """Where an interrupted node upload continues."""
    grant = granted(request, artifact_id, "upload")
    async with request.app.state.sessions() as session:
        row = await artifacts.get(session, tenant_id=grant.tenant_id, artifact_id=artifact_id)
    return to_view(row)


@router.patch(
    "/transfers/{artifact_id}",
    response_model=ArtifactView,
    responses={204: {"description": "stored; the upload goes on (Upload-Offset)"}},
    max_body_size=UPLOAD_BODY_LIMIT,
)
async def transfer_upload(
    artifact_id: ArtifactId, request: Request, artifacts: ArtifactsDep
) -> Response:
    grant = granted(request, artifact_id, "upload")
    return await _append(
        request,
        artifacts,
        tenant_id=grant.tenant_id,
        artifact_id=artifact_id,
        device_key=grant.device_key,
    )
