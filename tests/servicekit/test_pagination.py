"""A cursor is read back only by the list, and the tenant, it was made for."""

import pytest

from edgecloud_servicekit.pagination import decode_cursor, encode_cursor
from edgecloud_servicekit.problems import BadRequest

POSITION = "2026-01-01T00:00:00+00:00|c-1"


def test_a_cursor_is_read_back_by_its_own_list() -> None:
    cursor = encode_cursor(POSITION, scope="containers:t-a")
    assert decode_cursor(cursor, scope="containers:t-a") == POSITION


@pytest.mark.parametrize(
    "scope", ["containers:t-b", "artifacts:t-a", "containers:t-a:x", "containers:", ""]
)
def test_a_cursor_of_another_list_or_tenant_is_refused(scope: str) -> None:
    cursor = encode_cursor(POSITION, scope="containers:t-a")
    with pytest.raises(BadRequest) as refused:
        decode_cursor(cursor, scope=scope)
    assert refused.value.code == "invalid_cursor"
    assert refused.value.status == 400
