from edgecloud_servicekit.problems import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Problem,
    Unprocessable,
)


class ArtifactNotFound(NotFound):
    default_code = "artifact_not_found"

    def __init__(self, artifact_id: str) -> None:
        super().__init__(f"artifact {artifact_id} not found")


class QuotaExceeded(PayloadTooLarge):
    default_code = "quota_exceeded"

    def __init__(self, *, needed: int, used: int, quota: int) -> None:
        super().__init__(
            f"the tenant's storage quota of {quota} bytes would be exceeded"
            f" ({used} used, {needed} more asked for)",
            quota_bytes=quota,
            used_bytes=used,
        )


class OffsetMismatch(Conflict):
    """The uploader's idea of where to continue differs from what is stored."""

    default_code = "offset_mismatch"

    def __init__(self, *, expected: int, given: int) -> None:
        super().__init__(
            f"the upload continues at byte {expected}, not {given}",
            received=expected,
            headers={"Upload-Offset": str(expected)},
        )


class BadContentRange(Problem):
    status, default_code, title = 400, "bad_content_range", "Bad Content-Range"


class ChecksumMismatch(Unprocessable):
    default_code = "checksum_mismatch"

    def __init__(self, *, declared: str, actual: str) -> None:
        super().__init__(
            f"the bytes' SHA-256 is {actual}, not the declared {declared}; the upload was"
            " discarded, send it again",
            declared=declared,
            actual=actual,
        )


class ArtifactIncomplete(Conflict):
    default_code = "artifact_incomplete"

    def __init__(self, artifact_id: str) -> None:
        super().__init__(f"artifact {artifact_id} is still being uploaded")


class AlreadyComplete(Conflict):
    default_code = "artifact_complete"

    def __init__(self, artifact_id: str) -> None:
        super().__init__(f"artifact {artifact_id} is complete; it cannot change")


class RangeNotSatisfiable(Problem):
    status, default_code, title = 416, "range_not_satisfiable", "Range not satisfiable"


class UploadBusy(Conflict):
    default_code = "upload_in_progress"

    def __init__(self, artifact_id: str) -> None:
        super().__init__(
            f"another piece of artifact {artifact_id} is being stored; ask where the upload"
            " stands (Content-Range: bytes */size) and go on from there",
            headers={"Retry-After": "1"},
        )


class NodeUploadsOnly(Forbidden):
    """Artifacts a node is expected to upload (a container's files, a job's log) take bytes
    only with the transfer grant given to that node; their tenant reads and deletes them."""

    default_code = "artifact_node_only"

    def __init__(self, artifact_id: str) -> None:
        super().__init__(
            f"artifact {artifact_id} is uploaded by the node it was expected from; its"
            " tenant can read it once complete, not write into it"
        )
