"""The fake gateway's artifacts, deployments, container logs and copies out of containers
(see fake_gateway.py).

Uploads are checked as the storage checks them: the ``Content-Range`` must start where the
upload stands (else 409 ``offset_mismatch`` with ``received``), ``bytes */size`` asks where
that is, the last byte completes the artifact after its SHA-256 is compared. Faults can be
injected: a piece cut off partway (the bytes before the cut are kept, as the storage keeps
them) by a dropped connection or a 500, and downloads that break off.
"""

import hashlib
import itertools
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .problems import problem

CREATED_AT = "2025-06-01T12:00:00Z"
CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)")


@dataclass
class Cut:
    """The next piece uploaded stops after ``keep`` bytes: the connection drops (no
    ``status``) or the gateway answers ``status``."""

    keep: int
    status: int | None = None


@dataclass
class Stored:
    view: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)
    polls_left: int = 0
    """For a copy out of a container: reads before the device has uploaded it."""
    content: bytes | None = None
    """For a copy: the tar the device will upload."""


def artifact_view(artifact_id: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": artifact_id,
        "name": "file",
        "kind": "file",
        "state": "uploading",
        "size": None,
        "received": 0,
        "sha256": None,
        "owner": "admin",
        "container": None,
        "created_at": CREATED_AT,
        "completed_at": None,
        "upload_url": f"/api/v1/artifacts/{artifact_id}",
        "content_url": None,
    }
    return {**base, **changes}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ArtifactRoutes(ABC):
    stored: dict[str, Stored] = field(default_factory=dict)
    quota_bytes: int | None = None
    used_bytes: int = 0
    upload_faults: list[Cut | None] = field(default_factory=list)
    """One per piece uploaded from now on; None lets a piece through."""
    download_cuts: list[int] = field(default_factory=list)
    """Each download answer breaks off after this many bytes (one entry per answer)."""
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployment_updates: list[dict[str, Any]] = field(default_factory=list)
    """Applied one per read of a deployment; the last state then stays."""
    log_text: str = ""
    log_events: list[str] = field(default_factory=list)
    """Raw text of the followed log stream, sent piece by piece."""
    copies: dict[str, bytes] = field(default_factory=dict)
    """What the device packs for each path; a path missing here fails the command."""
    copy_polls: int = 2
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def artifact_route(self, request: httpx.Request) -> httpx.Response | None:
        """The answer for an artifact, deployment, logs or files request; None otherwise."""
        parts = request.url.path.removeprefix("/api/v1/").split("/")
        match request.method, parts:
            case "POST", ["artifacts"]:
                return self._create_artifact(json.loads(request.content))
            case "GET", ["artifacts", artifact_id]:
                found = self._stored(artifact_id)
                return httpx.Response(200, json=found.view) if found else _no_artifact(artifact_id)
            case "PATCH", ["artifacts", artifact_id]:
                return self._upload_piece(request, artifact_id)
            case "GET", ["artifacts", artifact_id, "content"]:
                return self._download(request, artifact_id)
            case "POST", ["containers", container_id, "deploy"]:
                return self._start_deployment(container_id, json.loads(request.content))
            case "GET", ["deployments", deployment_id]:
                return self._read_deployment(deployment_id)
            case "GET", ["containers", container_id, "logs"]:
                return self._container_logs(request, container_id)
            case "POST", ["containers", container_id, "files"]:
                return self._copy_out(container_id, json.loads(request.content)["path"])
        return None

    def new_artifact(self, data: bytes, **changes: Any) -> dict[str, Any]:
        """An artifact already stored whole, as a test's starting point."""
        artifact_id = f"art-{next(self._ids)}"
        view = artifact_view(
            artifact_id,
            state="complete",
            size=len(data),
            received=len(data),
            sha256=sha256(data),
            upload_url=None,
            content_url=f"/api/v1/artifacts/{artifact_id}/content",
            **changes,
        )
        self.stored[artifact_id] = Stored(view, bytearray(data))
        return view

    # Uploads

    def _create_artifact(self, body: dict[str, Any]) -> httpx.Response:
        size = body["size"]
        if self.quota_bytes is not None and self.used_bytes + size > self.quota_bytes:
            return problem(
                413,
                "quota_exceeded",
                f"the tenant's storage quota of {self.quota_bytes} bytes would be exceeded"
                f" ({self.used_bytes} used, {size} more asked for)",
            )
        self.used_bytes += size
        artifact_id = f"art-{next(self._ids)}"
        view = artifact_view(
            artifact_id, name=body["name"], kind=body["kind"], size=size, sha256=body["sha256"]
        )
        self.stored[artifact_id] = Stored(view)
        if size == 0:
            self._completed(self.stored[artifact_id])
        return httpx.Response(201, json=view)

    def _upload_piece(self, request: httpx.Request, artifact_id: str) -> httpx.Response:
        found = self._stored(artifact_id)
        if found is None:
            return _no_artifact(artifact_id)
        view = found.view
        match = CONTENT_RANGE.fullmatch(request.headers.get("Content-Range", ""))
        if match is None or int(match[3]) != view["size"]:
            return problem(400, "bad_content_range", "send Content-Range: bytes a-b/size")
        if view["state"] == "complete":
            return problem(409, "artifact_complete", f"artifact {artifact_id} is complete")
        received = len(found.data)  # not the view's, which a test may make stale
        if match[1] is None:
            return httpx.Response(204, headers={"Upload-Offset": str(received)})
        start, end = int(match[1]), int(match[2]) + 1
        if start != received:
            return problem(
                409,
                "offset_mismatch",
                f"the upload continues at byte {received}, not {start}",
                headers={"Upload-Offset": str(received)},
                received=received,
            )
        fault = self.upload_faults.pop(0) if self.upload_faults else None
        body = bytearray()
        for chunk in request.stream:  # type: ignore[union-attr]
            body += chunk
            if fault is not None and len(body) >= fault.keep:
                break
        if fault is not None:
            self._keep(found, bytes(body[: fault.keep]))
            if fault.status is None:
                raise httpx.RemoteProtocolError("Server disconnected", request=request)
            return problem(fault.status, "internal_error", "the storage broke down")
        if len(body) != end - start:
            return problem(400, "bad_content_range", "Content-Length differs from the range")
        self._keep(found, bytes(body))
        if len(found.data) < view["size"]:
            return httpx.Response(204, headers={"Upload-Offset": str(view["received"])})
        if sha256(bytes(found.data)) != view["sha256"]:
            found.data.clear()
            view["received"] = 0
            return problem(
                422,
                "checksum_mismatch",
                "the bytes' SHA-256 differs from the declared one; send it again",
            )
        self._completed(found)
        return httpx.Response(200, json=view)

    @staticmethod
    def _keep(found: Stored, data: bytes) -> None:
        found.data += data
        found.view["received"] = len(found.data)

    @staticmethod
    def _completed(found: Stored) -> None:
        artifact_id = found.view["id"]
        found.view.update(
            state="complete",
            received=len(found.data),
            size=len(found.data),
            sha256=sha256(bytes(found.data)),
            completed_at=CREATED_AT,
            upload_url=None,
            content_url=f"/api/v1/artifacts/{artifact_id}/content",
        )

    # Downloads

    def _download(self, request: httpx.Request, artifact_id: str) -> httpx.Response:
        found = self._stored(artifact_id)
        if found is None:
            return _no_artifact(artifact_id)
        if found.view["state"] != "complete":
            return problem(409, "artifact_incomplete", f"artifact {artifact_id} is incomplete")
        data = bytes(found.data)
        headers = {"X-Content-SHA256": sha256(data), "Accept-Ranges": "bytes"}
        start, status = 0, 200
        wanted = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if wanted:
            start, status = int(wanted[1]), 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        headers["Content-Length"] = str(len(body))
        cut = self.download_cuts.pop(0) if self.download_cuts else None
        return httpx.Response(status, headers=headers, content=_sent(body, cut, request))

    # Deployments

    def _start_deployment(self, container_id: str, body: dict[str, Any]) -> httpx.Response:
        found = self.known_container(container_id)
        if found is None:
            return problem(404, "container_not_found", f"container {container_id} not found")
        for artifact_id in (body["artifact"], body["script"]):
            if self._stored(artifact_id) is None:
                return _no_artifact(artifact_id)
        deployment_id = f"dep-{next(self._ids)}"
        command_id = f"cmd-deploy-{deployment_id}"
        self.deployments[deployment_id] = {
            "id": deployment_id,
            "container": container_id,
            "device": found["device"],
            "artifact": body["artifact"],
            "script": body["script"],
            "state": "queued",
            "steps": [],
            "received": None,
            "total": None,
            "exit_code": None,
            "error_code": None,
            "error": None,
            "command": command_id,
            "created_at": CREATED_AT,
            "finished_at": None,
        }
        answer = {"deployment": deployment_id, "command": command_id, "state": "queued"}
        return httpx.Response(202, json=answer)

    def _read_deployment(self, deployment_id: str) -> httpx.Response:
        if deployment_id not in self.deployments:
            return problem(404, "deployment_not_found", f"deployment {deployment_id} not found")
        deployment = self.deployments[deployment_id]
        if self.deployment_updates:
            deployment.update(self.deployment_updates.pop(0))
        return httpx.Response(200, json=deployment)

    # Logs and copies out of a container

    def _container_logs(self, request: httpx.Request, container_id: str) -> httpx.Response:
        if self.known_container(container_id) is None:
            return problem(404, "container_not_found", f"container {container_id} not found")
        if request.url.params.get("follow") == "true":
            pieces = (piece.encode() for piece in self.log_events)
            headers = {"Content-Type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=pieces)
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        return httpx.Response(200, headers=headers, content=self.log_text.encode())

    def _copy_out(self, container_id: str, path: str) -> httpx.Response:
        found = self.known_container(container_id)
        if found is None:
            return problem(404, "container_not_found", f"container {container_id} not found")
        artifact_id = f"art-{next(self._ids)}"
        command_id = f"cmd-copy-{artifact_id}"
        view = artifact_view(artifact_id, name="copy.tar", kind="result", container=container_id)
        self.stored[artifact_id] = Stored(
            view, polls_left=self.copy_polls, content=self.copies.get(path)
        )
        self.record_command(
            {
                "id": command_id,
                "action": "copy",
                "state": "sent",
                "container": container_id,
                "device": found["device"],
                "result": None,
                "error": None,
                "error_code": None,
                "attempts": 1,
                "created_at": CREATED_AT,
                "sent_at": CREATED_AT,
                "finished_at": None,
            }
        )
        if path not in self.copies:
            self.fail_command(command_id, "path_not_found", f"no such file or directory: {path}")
        return httpx.Response(202, json={"artifact": artifact_id, "command": command_id})

    def _stored(self, artifact_id: str) -> Stored | None:
        found = self.stored.get(artifact_id)
        if found is not None and found.content is not None and found.polls_left:
            # A copy: the device uploads it after a few reads.
            found.polls_left -= 1
            if not found.polls_left:
                found.data = bytearray(found.content)
                self._completed(found)
        return found

    # What the gateway these routes are mixed into provides.
    @abstractmethod
    def known_container(self, container_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def record_command(self, command: dict[str, Any]) -> None: ...

    @abstractmethod
    def fail_command(self, command_id: str, code: str, error: str) -> None: ...


def _no_artifact(artifact_id: str) -> httpx.Response:
    return problem(404, "artifact_not_found", f"artifact {artifact_id} not found")


def _sent(body: bytes, cut: int | None, request: httpx.Request) -> Iterator[bytes]:
    """The body in pieces of 1000 bytes; broken off after ``cut`` bytes when given."""
    for start in range(0, len(body), 1000):
        piece = body[start : start + 1000]
        if cut is not None and start + len(piece) > cut:
            yield piece[: cut - start]
            raise httpx.ReadError("Connection reset by peer", request=request)
        yield piece
    if cut is not None and cut >= len(body):
        raise httpx.ReadError("Connection reset by peer", request=request)
