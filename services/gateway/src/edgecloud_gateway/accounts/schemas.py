from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from edgecloud_contracts.text import SINGLE_LINE, ObjectId

from .passwords import MAX_LENGTH

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"
Username = Annotated[
    str,
    Field(
        min_length=3,
        max_length=64,
        pattern=NAME_PATTERN,
        description="lowercase letters, digits, . _ -",
    ),
]
TenantName = Annotated[str, Field(min_length=3, max_length=64, pattern=NAME_PATTERN)]
# Any character a person can type; NUL cannot be typed and breaks hashing libraries.
Password = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH, pattern=r"^[^\x00]*$")]


class _Lowercased(BaseModel):
    @field_validator("username", "tenant", mode="before", check_fields=False)
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class LoginRequest(_Lowercased):
    username: Annotated[str, Field(min_length=1, max_length=64, pattern=SINGLE_LINE)]
    password: Password
    tenant: ObjectId | None = None
    """For users in several tenants: which one to sign in to (default: the first joined)."""


class SwitchRequest(BaseModel):
    tenant: ObjectId
    """Name or id of a tenant the user belongs to."""


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    csrf_token: str


class RegisterRequest(_Lowercased):
    username: Username
    password: Password
    tenant: TenantName | None = None
    """Name of the new tenant (default: the username); with an invitation, its tenant."""
    invitation: Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)] | None = (
        None
    )


class UserOut(BaseModel):
    id: str
    username: str
    created_at: datetime
    disabled_at: datetime | None = None
    """Set while the account is disabled: it cannot sign in and holds no tokens."""


class TenantOut(BaseModel):
    id: str
    name: str


class RegisterResponse(BaseModel):
    user: UserOut
    tenant: TenantOut
    role: str


class MembershipOut(BaseModel):
    tenant: TenantOut
    role: str


class MeOut(BaseModel):
    user: UserOut
    tenant: TenantOut
    roles: list[str]
    tenants: list[MembershipOut]
    """Every tenant the user belongs to (sign in with ``tenant`` to switch)."""


class PasswordChange(BaseModel):
    current_password: Password
    new_password: Password


class PasswordResetRequest(BaseModel):
    password: Password | None = None
    """The user's new password. Without it the user gets a one-time reset token (shown
    once), and no password works until it is used."""
    ttl_hours: Annotated[int, Field(ge=1, le=7 * 24)] = 24


class PasswordResetOut(BaseModel):
    user: UserOut
    reset_token: str | None = None
    """Shown once: the user sets a new password with it (``POST /api/v1/auth/reset``)."""
    expires_at: datetime | None = None


class ResetRedeem(BaseModel):
    token: Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)]
    password: Password
