"""Opaque cursors for ``?limit=&cursor=`` lists: the position after the last item seen."""

import base64

from .problems import BadRequest


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position a cursor names; a cursor we did not make is a 400."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest("cursor is not valid", code="invalid_cursor") from err
    if not value:
        raise BadRequest("cursor is not valid", code="invalid_cursor")
    return value
