"""The router's device authenticator refuses malformed HELLO details in words: services may
call it too, and a Python error would reach them as wamp.error.runtime_error (found by
tests/security/test_wamp_fuzz.py)."""

from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from edgecloud_contracts import errors
from edgecloud_registry.credentials.rpc import DeviceAuthenticator


@pytest.mark.parametrize(
    ("authid", "details"),
    [
        ("a_b", {"authextra": ["not", "an", "object"]}),
        ("a_b", {"authextra": {"pubkey": "00" * 32, "enrolment_token": 42}}),
        ("a_b", ["details", "as", "a", "list"]),
        (7, {"authextra": {"pubkey": "00" * 32}}),
    ],
)
async def test_malformed_details_are_an_invalid_argument(authid: Any, details: Any) -> None:
    # Refused before the database is touched: the sessions are never opened.
    authenticator = DeviceAuthenticator(async_sessionmaker())
    with pytest.raises(ApplicationError) as refused:
        await authenticator.authenticate("edgecloud", authid, details)
    assert refused.value.error == errors.INVALID_ARGUMENT
