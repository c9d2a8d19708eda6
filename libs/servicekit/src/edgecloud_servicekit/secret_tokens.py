"""Bearer secrets handed out once (API tokens, invitations, enrolment tokens).

Only a SHA-256 of each is stored: the tokens are long random strings, so a slow password
hash would buy nothing, and a lookup by hash stays one indexed query.
"""

import hashlib
import secrets


def new_token(prefix: str) -> str:
    """A fresh secret, its prefix telling what kind it is (``ec_``, ``eci_``, ``ece_``)."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
