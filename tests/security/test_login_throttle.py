"""Guessing passwords and tokens through the real gateway.

Covered elsewhere: the throttle's waits, its lock and the per-address limit across accounts
(tests/gateway/test_throttle.py, in process: every stack test comes from 127.0.0.1), and a
throttled then locked account over HTTP (tests/integration/test_accounts.py). Here: while
one account is throttled, its right password is refused too, and everyone else (the
account's existing tokens included) keeps working; and guessing bearer tokens gets nowhere.
"""

import secrets

import httpx
import pytest

from tests.conftest import ONE_DATABASE
from tests.support.stack import Stack
from tests.support.users import invite, register

pytestmark = [pytest.mark.stack, ONE_DATABASE]

FREE_FAILURES = 3
"""GATEWAY_THROTTLE_ACCOUNT_FREE_FAILURES of the test stack."""
GUESSES = 100


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["code"])


async def test_a_throttled_account_refuses_even_its_password_and_no_one_else_is_hurt(
    stack: Stack,
) -> None:
    target = await register(stack)
    colleague = await register(stack, invitation=await invite(stack, target))
    stranger = await register(stack)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        wrong = {"username": target.username, "password": "not-the-password"}
        for _ in range(FREE_FAILURES + 1):
            failed = await client.post("/api/v1/auth/login", json=wrong)
            assert failed.status_code == 401
            assert problem_code(failed) == "invalid_credentials"
        right = {"username": target.username, "password": target.password}
        refused = await client.post("/api/v1/auth/login", json=right)
        assert refused.status_code == 429
        assert problem_code(refused) in ("login_throttled", "login_locked")
        assert int(refused.headers["Retry-After"]) >= 1
        # The user's name in another case is the same account.
        shouted = await client.post(
            "/api/v1/auth/login", json={**right, "username": target.username.upper()}
        )
        assert shouted.status_code == 429
        for other in (colleague, stranger):
            signed_in = await client.post(
                "/api/v1/auth/login", json={"username": other.username, "password": other.password}
            )
            assert signed_in.status_code == 200, signed_in.text
        # Sessions already open are not the guesser's to end.
        assert (await client.get("/api/v1/me", headers=target.headers)).status_code == 200


async def test_guessed_bearer_tokens_are_all_refused_alike(stack: Stack) -> None:
    """Tokens are 32 random bytes, looked up by their SHA-256: guessing one is hopeless
    however fast, so they are not throttled (which would let a guesser lock real users
    out). Every guess, well-formed or not, gets the same 401; real tokens keep working."""
    user = await register(stack)
    guesses = [f"ec_{secrets.token_urlsafe(32)}" for _ in range(GUESSES)]
    guesses += ["ec_", "garbage", user.token[:-1], user.token + "x", "ec_" + "A" * 300]
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        for guess in guesses:
            answer = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {guess}"})
            assert answer.status_code == 401, (guess, answer.text)
            assert problem_code(answer) == "token_invalid"
            assert answer.json()["detail"] == "the token is unknown or revoked"
        assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200
