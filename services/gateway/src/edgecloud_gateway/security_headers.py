"""Headers every answer of the gateway carries: what a browser may load, frame and sniff.

Pages get a Content-Security-Policy that lets them run only this site's own scripts (all
vendored under /static: no inline script, no inline event handler, no eval) and load
nothing from elsewhere; other answers (JSON, problems, files, streams) may load nothing at
all. No page may be framed (clickjacking), no answer is sniffed into another type, the
Referer never leaves the site, and over TLS browsers are told to use nothing else.

A page that needs more sets its own policy (:func:`content_security_policy`), which is kept:
the container page lets xterm.js write ``<style>`` elements, and the API explorer runs its
one inline script by its hash.
"""

import base64
import hashlib
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS_MAX_AGE_S = 365 * 24 * 3600

_NOTHING = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def content_security_policy(
    *, inline_styles: bool = False, script_hashes: Iterable[str] = ()
) -> str:
    """The pages' policy; ``inline_styles``: also ``<style>`` elements (xterm.js writes its
    own); ``script_hashes``: inline scripts allowed by their ``sha256-...`` hash."""
    scripts = " ".join(["'self'", *(f"'{digest}'" for digest in script_hashes)])
    styles = "'self' 'unsafe-inline'" if inline_styles else "'self'"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            f"style-src {styles}",
            # The empty favicon of the pages, and the explorer's icons, are data: URLs.
            "img-src 'self' data:",
            # The event stream, the API, and the shell's WebSocket: this site only.
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def script_hash(source: str) -> str:
    """The CSP hash source of an inline script's text."""
    digest = hashlib.sha256(source.encode()).digest()
    return "sha256-" + base64.b64encode(digest).decode()


PAGES = content_security_policy()


class SecurityHeaders:
    """ASGI middleware adding the headers to every HTTP answer that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # uvicorn says https when it serves TLS itself, or when a trusted proxy says so.
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                page = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("Content-Security-Policy", PAGES if page else _NOTHING)
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if tls:
                    headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_MAX_AGE_S}")
            await send(message)

        await self.app(scope, receive, send_with_headers)
