"""How an edge device is named: ``<hostname>/<MAC>`` for people, a URI-safe key for WAMP."""

import re

_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_NOT_KEY_CHAR = re.compile(r"[^a-z0-9]+")
KEY_PATTERN = r"^[a-z0-9_]{1,100}$"


def normalise_mac(mac: str) -> str:
    """``B8:27:EB:12:34:56`` or ``b8-27-eb-12-34-56`` -> ``b8:27:eb:12:34:56``."""
    cleaned = mac.strip().lower().replace("-", ":")
    if not _MAC.match(cleaned):
        raise ValueError(f"not a MAC address: {mac!r}")
    return cleaned


def device_id(hostname: str, mac: str) -> str:
    """The id shown to users, e.g. ``rpi-kitchen/b8:27:eb:12:34:56``."""
    return f"{hostname}/{normalise_mac(mac)}"


def device_key(hostname: str, mac: str) -> str:
    """The URI-safe key, e.g. ``rpi_kitchen_b827eb123456``: lowercase ``[a-z0-9_]``."""
    host = _NOT_KEY_CHAR.sub("_", hostname.lower()).strip("_") or "node"
    return f"{host}_{normalise_mac(mac).replace(':', '')}"
