"""Password hashing (argon2id, off the event loop) and the password policy."""

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .exceptions import WeakPassword

# At least 19 MiB and 2 passes (OWASP's argon2id floor).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Verified against when the user does not exist, so timing does not reveal usernames.
_DUMMY_HASH = _hasher.hash("edgecloud-no-such-user")

MIN_LENGTH = 10
MAX_LENGTH = 256  # argon2 takes any length; a bound keeps hashing cheap to refuse
_COMMON = frozenset(
    {
        "password123",
        "password1234",
        "passw0rd123",
        "1234567890",
        "12345678910",
        "qwertyuiop",
        "qwerty12345",
        "iloveyou123",
        "administrator",
        "letmein1234",
        "welcome123",
        "abc1234567",
        "1q2w3e4r5t",
        "0987654321",
        "changeme123",
        "edgecloud123",
    }
)


def check_strength(password: str, *, username: str) -> None:
    """Raise :class:`WeakPassword` naming every rule the password breaks."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"use at least {MIN_LENGTH} characters")
    if len(set(password)) < 5:
        problems.append("use at least 5 different characters")
    if username and username.lower() in password.lower():
        problems.append("do not include the username")
    if password.lower() in _COMMON:
        problems.append("this password is too common")
    if problems:
        raise WeakPassword(problems)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return (
                _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
