"""The dashboard's session cookie acts only with its CSRF header, compared in constant time."""

import hmac
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from edgecloud_gateway import deps
from edgecloud_gateway.accounts.exceptions import CsrfRejected
from edgecloud_gateway.tokens.service import csrf_token_for

SECRET = "a-test-secret-of-at-least-32-bytes"
SESSION = "ec_a-session-token"


def cookie_request(csrf: bytes | None) -> Request:
    """A state-changing request carrying the session cookie and ``csrf`` as its header."""
    headers = [(b"cookie", f"{deps.SESSION_COOKIE}={SESSION}".encode())]
    if csrf is not None:
        headers.append((deps.CSRF_HEADER.lower().encode(), csrf))
    app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(secret=SECRET)))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "app": app}
    return Request(scope)


async def test_the_csrf_header_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    expected = csrf_token_for(SESSION, secret=SECRET)
    guess = expected[:-1] + ("0" if expected[-1] != "0" else "1")
    with pytest.raises(CsrfRejected):
        await deps._caller(cookie_request(guess.encode()))
    assert compared == [(guess.encode(), expected.encode())]


@pytest.mark.parametrize("sent", [None, b"", b"\xe9t\xe9", b"x" * 4000])
async def test_a_missing_or_strange_csrf_header_is_refused_not_an_error(sent: bytes | None) -> None:
    with pytest.raises(CsrfRejected):
        await deps._caller(cookie_request(sent))
