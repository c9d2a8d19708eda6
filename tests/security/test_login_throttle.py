"""Guessing passwords and tokens through the real gateway.

Covered elsewhere: the throttle's waits and budgets in process, on both databases
(tests/gateway/test_throttle.py), and a throttled client over HTTP
(tests/integration/test_accounts.py). Here: a burst of parallel guesses passes no more
than the budget; while one client is throttled for an account, its right password is
refused too, and everyone else (the account's existing tokens included) keeps working;
a stranger's failures from another address do not stop the owner signing in; and
guessing bearer tokens gets nowhere. Another client is another loopback source address
(127.0.0.2): every address in 127/8 reaches a gateway listening on 127.0.0.1.
"""

import asyncio
import secrets

import httpx
import pytest

from tests.support.stack import Stack
from tests.support.users import invite, register

pytestmark = pytest.mark.stack

FREE_FAILURES = 3
"""GATEWAY_THROTTLE_PAIR_FREE_FAILURES of the test stack."""
ACCOUNT_FREE_FAILURES = 6
"""GATEWAY_THROTTLE_ACCOUNT_FREE_FAILURES of the test stack."""
GUESSES = 100


def client_from(stack: Stack, address: str) -> httpx.AsyncClient:
    """A client of the gateway whose connections come from ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30, transport=transport)


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["code"])


async def test_a_burst_of_parallel_guesses_passes_at_most_the_budget(stack: Stack) -> None:
    """Counted before the password is checked, in the statement that reads the count:
    forty guesses at once get FREE_FAILURES + 1 password checks (the last of which starts
    the first wait), and the rest are refused unchecked. On both databases."""
    target = await register(stack)
    wrong = {"username": target.username, "password": "not-the-password"}
    async with client_from(stack, "127.0.0.1") as client:
        answers = await asyncio.gather(
            *(client.post("/api/v1/auth/login", json=wrong) for _ in range(40))
        )
    codes = [a.status_code for a in answers]
    assert codes.count(401) == FREE_FAILURES + 1, codes
    assert codes.count(429) == 40 - FREE_FAILURES - 1, codes
    assert {problem_code(a) for a in answers if a.status_code == 429} == {"login_throttled"}


async def test_a_strangers_failures_elsewhere_do_not_lock_the_owner_out(stack: Stack) -> None:
    """No lockout anyone can aim at anyone: a stranger failing far past every account
    budget from another address is slowed down, and the owner signs in all the while."""
    owner = await register(stack)
    wrong = {"username": owner.username, "password": "not-the-password"}
    right = {"username": owner.username, "password": owner.password}
    failed = 0
    for n in range(2, 10):  # strangers at eight addresses, each until it has to wait
        async with client_from(stack, f"127.0.0.{n}") as stranger:
            answers = [await stranger.post("/api/v1/auth/login", json=wrong) for _ in range(6)]
        codes = [a.status_code for a in answers]
        assert codes.count(401) <= FREE_FAILURES + 1, codes
        assert codes[-1] == 429, codes
        failed += codes.count(401)
    assert failed > ACCOUNT_FREE_FAILURES  # the account as a whole is being guessed at
    async with client_from(stack, "127.0.0.2") as stranger:
        refused = await stranger.post("/api/v1/auth/login", json=right)
        assert refused.status_code == 429
    async with client_from(stack, "127.0.0.1") as own:
        for _ in range(3):
            signed_in = await own.post("/api/v1/auth/login", json=right)
            assert signed_in.status_code == 200, signed_in.text


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
        assert problem_code(refused) == "login_throttled"
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
