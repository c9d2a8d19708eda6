from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field


class LoginRequest(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    csrf_token: str


class UserOut(BaseModel):
    id: str
    username: str
    created_at: datetime


class TenantOut(BaseModel):
    id: str
    name: str


class MeOut(BaseModel):
    user: UserOut
    tenant: TenantOut
    roles: list[str]
