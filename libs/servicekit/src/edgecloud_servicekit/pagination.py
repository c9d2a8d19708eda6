"""Opaque cursors for ``?limit=&cursor=`` lists: the position after the last item seen.

A cursor carries the position itself (never an id looked up to find it, which would tell a
caller about rows it cannot see) and the list it was made for: its ``scope``, which names the
list and whose it is (``"containers:<tenant id>"``). A cursor shown to another scope (another
tenant's list, or another list) is refused as one we did not make: the position in it could
only ever narrow the caller's own rows, but a cursor crossing tenants is a mistake or a probe.
"""

import base64
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from edgecloud_contracts.text import OBJECT_ID

from .problems import BadRequest

_SEPARATOR = "\n"  # in no scope and no position


def encode_cursor(position: str, *, scope: str) -> str:
    """A cursor for ``position`` in the list ``scope``."""
    text = f"{scope}{_SEPARATOR}{position}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, scope: str) -> str:
    """The position a cursor names in the list ``scope``; a cursor we did not make, or made
    for another list or another tenant's, is a 400 ``invalid_cursor``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest("cursor is not valid", code="invalid_cursor") from err
    made_for, separator, position = text.partition(_SEPARATOR)
    if not separator or not position:
        raise BadRequest("cursor is not valid", code="invalid_cursor")
    if made_for != scope:
        raise BadRequest("the cursor was made for another list", code="invalid_cursor")
    return position


async def newest_first(
    session: AsyncSession,
    query: Select[Any],
    *,
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
    scope: str,
) -> tuple[list[Any], str | None]:
    """A page of rows newest first by ``at``, ties by ``id_``; the cursor names the last
    row seen. A cursor we did not make, made for another ``scope`` (or an id or time it
    could not hold) is a 400."""
    query = query.order_by(at.desc(), id_.desc()).limit(limit + 1)
    if cursor:
        at_text, _, last_id = decode_cursor(cursor, scope=scope).partition("|")
        try:
            last_at = datetime.fromisoformat(at_text)
        except ValueError as err:
            raise BadRequest("cursor is not valid", code="invalid_cursor") from err
        if last_at.tzinfo is None or not re.fullmatch(OBJECT_ID, last_id):
            raise BadRequest("cursor is not valid", code="invalid_cursor")
        query = query.where((at < last_at) | ((at == last_at) & (id_ < last_id)))
    rows: list[Any] = list((await session.scalars(query)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    position = f"{getattr(last, at.key).isoformat()}|{getattr(last, id_.key)}"
    return rows[:limit], encode_cursor(position, scope=scope)
