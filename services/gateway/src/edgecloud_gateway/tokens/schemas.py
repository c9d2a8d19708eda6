from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from edgecloud_contracts.text import Name


class TokenRequest(BaseModel):
    name: Name
    expires_in_days: Annotated[int, Field(ge=1, le=365)] = 90


class TokenOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


class CreatedToken(TokenOut):
    token: str
    """Shown once; only its hash is kept."""


class TokenPage(BaseModel):
    items: list[TokenOut]
    next_cursor: str | None
