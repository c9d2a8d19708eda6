"""Transfer URLs from the cloud, resolved only under the node's configured API address.

The cloud sends a transfer as a URL relative to the platform's public API address
(``/api/v1/transfers/<artifact id>?grant=...``); the node adds its own configured address
(``AGENT_API_URL``) in front. Whatever else a URL says is refused: an absolute URL, another
scheme or host (``//host``), backslashes, percent-encoding (``%2e%2e``, ``%2f``: nothing of a
transfer URL is ever encoded), dot segments, or a path outside the storage's transfers. A
relay that rewrites a command cannot point the node at another server (with the node's
files as the upload) or at another path of the API.
"""

import posixpath
from urllib.parse import parse_qsl, urlsplit

from edgecloud_contracts.artifacts import TRANSFERS_PATH

_FORBIDDEN = frozenset("\\%#@") | {chr(code) for code in range(0x21)} | {"\x7f"}


class UnsafeUrl(ValueError):
    """A transfer URL that would leave the storage's transfers under the API address."""


def check(url: str) -> str:
    """``url`` if it is a transfer URL relative to the API address; else :class:`UnsafeUrl`."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("no transfer URL")
    if any(character in _FORBIDDEN for character in url):
        raise UnsafeUrl("a transfer URL has no spaces, control characters, \\ % # or @")
    if not url.startswith("/") or url.startswith("//"):
        raise UnsafeUrl("a transfer URL is a path relative to the API address")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.fragment:
        raise UnsafeUrl("a transfer URL names no scheme or host")
    path = parts.path
    prefix = f"{TRANSFERS_PATH}/"
    artifact = path.removeprefix(prefix)
    if (
        not path.startswith(prefix)
        or posixpath.normpath(path) != path
        or artifact in ("", ".", "..")
        or "/" in artifact
    ):
        raise UnsafeUrl(f"a transfer URL is {prefix}<artifact id>")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError as err:
        raise UnsafeUrl("a transfer URL carries its grant only") from err
    if [name for name, _ in query] != ["grant"]:
        raise UnsafeUrl("a transfer URL carries its grant only")
    return url


def resolve(api_url: str, url: str, *, suffix: str = "") -> str:
    """The absolute URL of transfer ``url`` (checked) under ``api_url``; ``suffix`` goes
    after its path (``/status``)."""
    parts = urlsplit(check(url))
    return f"{api_url.rstrip('/')}{parts.path}{suffix}?{parts.query}"
