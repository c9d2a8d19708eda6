"""Refusals of a node's log segment (problem+json, each with its code)."""

from edgecloud_servicekit.problems import Forbidden, PayloadTooLarge, Unprocessable


class SegmentTooLarge(PayloadTooLarge):
    default_code = "segment_too_large"

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(
            f"a log segment is at most {limit} bytes, not {size}", size=size, limit=limit
        )


class SegmentMalformed(Unprocessable):
    default_code = "segment_malformed"


class SegmentNotGranted(Forbidden):
    """The segment names a container other than the one its grant is for."""

    default_code = "segment_not_granted"

    def __init__(self, *, named: str, granted: str) -> None:
        super().__init__(f"the segment is of container {named}, the grant of container {granted}")
