"""Which gateway to talk to and as whom: the global options first, then the stored login."""

from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .config import Credentials

DEFAULT_URL = "http://127.0.0.1:8000"


class NotLoggedIn(Exception):
    """No token for the gateway in use: neither ``--token`` nor a stored login."""


class InvalidUrl(ValueError):
    """The gateway URL is not an http(s) URL."""


@dataclass
class Target:
    """The gateway URL and bearer token for this invocation.

    The credentials file is read only when an option does not already say what it holds,
    so ``--url`` with ``--token`` works even where the file is unusable.
    """

    url_option: str | None = None
    token_option: str | None = None
    ca_bundle: Path | None = None
    """``--ca-bundle``/``EDGECLOUD_CA_BUNDLE``: the authorities an https:// gateway's
    certificate is verified against (None: the system's)."""
    _stored: Credentials | None = field(default=None, init=False)
    _loaded: bool = field(default=False, init=False)

    def stored(self) -> Credentials | None:
        """The stored login, read once."""
        if not self._loaded:
            self._stored = config.load()
            self._loaded = True
        return self._stored

    def url(self) -> str:
        """``--url``/``EDGECLOUD_URL``, else the URL of the stored login, else the default."""
        if self.url_option:
            return normalise_url(self.url_option)
        stored = self.stored()
        return normalise_url(stored.url if stored else DEFAULT_URL)

    def token_from_file(self) -> bool:
        """Whether :meth:`token` comes from the credentials file (not from ``--token``)."""
        return not self.token_option

    def token(self) -> str:
        """``--token``/``EDGECLOUD_TOKEN``, else the stored token for this URL."""
        if self.token_option:
            return self.token_option
        url = self.url()
        stored = self.stored()
        # A token is only sent to the gateway that issued it, never to another --url.
        if stored and stored.token and normalise_url(stored.url) == url:
            return stored.token
        raise NotLoggedIn(f"not logged in to {url}; run `edgecloud login`")


def normalise_url(url: str) -> str:
    """The URL without trailing slashes; refuse anything but http and https."""
    url = url.strip().rstrip("/")
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidUrl(f"the gateway URL must start with http:// or https://, not {url!r}")
    return url
