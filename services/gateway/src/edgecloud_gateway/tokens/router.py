"""Public REST: named, expiring, revocable API tokens for scripts and the CLI."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status

from ..audit.trail import AuditDep, record_success
from ..deps import CallerDep, IdentityDep, PathId, SessionDep
from . import service
from .models import AccessToken
from .schemas import CreatedToken, TokenOut, TokenPage, TokenRequest

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


def _out(row: AccessToken) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CreatedToken)
async def create_token(
    body: TokenRequest, caller: CallerDep, session: SessionDep, trail: AuditDep
) -> CreatedToken:
    """A new API token acting as the caller in the current tenant; shown once. Made with an
    API token, it expires with that token at the latest and is revoked with it."""
    identity = caller.identity
    trail.begin("token.create", target=f"token:{body.name}", caller=identity)
    issued = await service.create_api_token(
        session=session,
        caller=caller,
        name=body.name,
        lifetime=timedelta(days=body.expires_in_days),
    )
    row = await service.get_api_token(session=session, caller=identity, token_id=issued.id)
    trail.note(token_id=issued.id, expires_at=issued.expires_at.isoformat())
    if row.parent_id is not None:
        trail.note(parent=row.parent_id)
    record_success(session, trail)
    return CreatedToken(**_out(row).model_dump(), token=issued.token)


@router.get("", response_model=TokenPage)
async def list_tokens(
    identity: IdentityDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> TokenPage:
    """The caller's live API tokens (never their values)."""
    rows, next_cursor = await service.list_api_tokens(
        session=session, caller=identity, limit=limit, cursor=cursor
    )
    return TokenPage(items=[_out(r) for r in rows], next_cursor=next_cursor)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(
    token_id: PathId, identity: IdentityDep, session: SessionDep, trail: AuditDep
) -> None:
    """Revoke one of the caller's API tokens; it and the tokens made with it stop working
    at once."""
    trail.begin("token.revoke", target=f"token:{token_id}", caller=identity)
    row = await service.get_api_token(session=session, caller=identity, token_id=token_id)
    await service.revoke_token(session=session, token_id=row.id)
    record_success(session, trail)
