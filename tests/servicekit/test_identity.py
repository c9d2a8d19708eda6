from datetime import UTC, datetime, timedelta

import pytest

from edgecloud_servicekit.identity import Identity, sign_identity, verify_identity
from edgecloud_servicekit.problems import Unauthenticated

SECRET = "x" * 48
ALICE = Identity(
    user_id="u1",
    username="alice",
    tenant_id="t1",
    roles=frozenset({"member"}),
    quotas={"containers": 3, "storage_bytes": 1 << 30},
)


def test_round_trip() -> None:
    token = sign_identity(ALICE, secret=SECRET, audience="registry")
    assert verify_identity(token, secret=SECRET, audience="registry") == ALICE


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"secret": "y" * 48}, "identity_invalid"),
        ({"audience": "storage"}, "identity_invalid"),
        ({"now": datetime.now(UTC) - timedelta(minutes=2)}, "identity_expired"),
    ],
)
def test_refusals(kwargs: dict, code: str) -> None:
    options = {"secret": SECRET, "audience": "registry", **kwargs}
    token = sign_identity(ALICE, **options)
    with pytest.raises(Unauthenticated) as refused:
        verify_identity(token, secret=SECRET, audience="registry")
    assert refused.value.code == code
