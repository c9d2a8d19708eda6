from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from edgecloud_contracts.text import SINGLE_LINE, Note, ObjectId

from ..accounts.schemas import TenantName, TenantOut, UserOut

Role = Literal["member", "tenant_admin", "operator"]


class InvitationRequest(BaseModel):
    role: Role = "member"
    ttl_hours: Annotated[int, Field(ge=1, le=30 * 24)] = 72
    note: Note = ""
    tenant: ObjectId | None = None
    """Operators only: invite into another tenant (its name or id)."""


class InvitationOut(BaseModel):
    id: str
    tenant: TenantOut
    role: str
    note: str
    created_at: datetime
    expires_at: datetime
    state: Literal["pending", "used", "revoked", "expired"]


class CreatedInvitation(InvitationOut):
    token: str
    """Shown once: the new member registers (or accepts) with it."""


class InvitationList(BaseModel):
    items: list[InvitationOut]
    next_cursor: str | None = None


class AcceptRequest(BaseModel):
    token: Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)]


class AcceptResponse(BaseModel):
    tenant: TenantOut
    role: str


class MemberOut(BaseModel):
    user: UserOut
    role: str
    joined_at: datetime


class MemberList(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None = None


class RoleChange(BaseModel):
    role: Role


class Quotas(BaseModel):
    containers: int
    storage_bytes: int
    api_requests_per_minute: int


class QuotaChange(BaseModel):
    containers: Annotated[int, Field(ge=0, le=100_000)] | None = None
    storage_bytes: Annotated[int, Field(ge=0, le=1 << 50)] | None = None
    api_requests_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class TenantDetail(TenantOut):
    created_at: datetime
    quotas: Quotas


class TenantList(BaseModel):
    items: list[TenantDetail]
    next_cursor: str | None = None


class TenantCreate(BaseModel):
    name: TenantName
