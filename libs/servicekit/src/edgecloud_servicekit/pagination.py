"""Opaque cursors for ``?limit=&cursor=`` lists: the position after the last item seen."""

import base64
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from edgecloud_contracts.text import OBJECT_ID

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


async def newest_first(
    session: AsyncSession,
    query: Select[Any],
    *,
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """A page of rows newest first by ``at``, ties by ``id_``; the cursor names the last
    row seen. A cursor we did not make (or an id or time it could not hold) is a 400."""
    query = query.order_by(at.desc(), id_.desc()).limit(limit + 1)
    if cursor:
        at_text, _, last_id = decode_cursor(cursor).partition("|")
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
    return rows[:limit], encode_cursor(position)
