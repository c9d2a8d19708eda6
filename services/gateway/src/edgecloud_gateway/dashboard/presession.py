"""CSRF for the forms a browser sends before it has a session: signing in and signing up.

Without it another site could post its own username and password to our sign-in form from
a victim's browser (login CSRF): the victim then works, unaware, in the attacker's account,
and what they upload or type there is the attacker's to read.

A signed double submit: the page with the form sets a random nonce in a cookie of its own
(HttpOnly, SameSite=Strict: a browser never sends it with another site's request) and puts
the nonce's HMAC under the service secret in the form; a post is taken only when the field
is the HMAC of the cookie it came with. Another site can neither read the field nor have
the cookie sent, and cannot make a pair without the secret.

The JSON sign-in API (scripts, the CLI) needs none of this: it takes only a JSON body, which
a page of another site can send only after a CORS preflight the gateway never answers.
"""

import hashlib
import hmac
import re
import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from ..settings import GatewaySettings
from .api import ApiError
from .render import CSRF_FIELD, page

PRESESSION_COOKIE = "edgecloud_presession"
MAX_AGE_S = 12 * 3600
"""A form left open this long must be reloaded."""
_NONCE = re.compile(r"[A-Za-z0-9_-]{32}")

REFUSED = ApiError(
    status=403,
    code="csrf_failed",
    message=(
        "This form is out of date or was not sent from this site. "
        "Nothing was done; please fill it in again."
    ),
)


def form_token(*, nonce: str, secret: str) -> str:
    """What the form carries for the cookie ``nonce``."""
    key = hmac.new(secret.encode(), b"edgecloud pre-session forms", hashlib.sha256).digest()
    return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()


def _nonce(request: Request) -> str | None:
    nonce = request.cookies.get(PRESESSION_COOKIE, "")
    return nonce if _NONCE.fullmatch(nonce) else None


def is_from_our_form(request: Request, sent: object) -> bool:
    """Whether a posted form carries the token for the nonce its cookie holds."""
    nonce = _nonce(request)
    if nonce is None or not isinstance(sent, str):
        return False
    settings: GatewaySettings = request.app.state.settings
    expected = form_token(nonce=nonce, secret=settings.secret)
    return hmac.compare_digest(sent.encode(), expected.encode())


def form_page(
    request: Request, template: str, *, status_code: int | None = None, **context: Any
) -> HTMLResponse:
    """A signed-out page with a form: its token, and the cookie it belongs to (the one the
    browser has, so that two open tabs both work, or a new one)."""
    settings: GatewaySettings = request.app.state.settings
    nonce = _nonce(request) or secrets.token_urlsafe(24)
    token = form_token(nonce=nonce, secret=settings.secret)
    answer = page(
        request,
        template,
        None,
        status_code=status_code,
        presession=token,
        csrf_field=CSRF_FIELD,
        **context,
    )
    answer.set_cookie(
        PRESESSION_COOKIE,
        nonce,
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=bool(settings.cookie_secure),
        path="/",
    )
    return answer
