"""Public REST: changing one's password; resetting, disabling and enabling accounts (tenant
admins for their members, operators for anyone). See :mod:`.management` for who may act on
whom; every action ends the user's sessions and tokens and is audited."""

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from ..audit.trail import AuditDep, record_success
from ..deps import CSRF_COOKIE, SESSION_COOKIE, IdentityDep, PathId, SessionDep, TenantAdminDep
from . import management
from .models import User
from .schemas import PasswordChange, PasswordResetOut, PasswordResetRequest, ResetRedeem, UserOut

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def _user(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        created_at=user.created_at,
        disabled_at=user.disabled_at,
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChange,
    request: Request,
    response: Response,
    identity: IdentityDep,
    session: SessionDep,
    trail: AuditDep,
) -> None:
    """Change your password with the current one (403 ``wrong_password``; guesses are
    throttled like sign-ins). Every session and API token of yours ends, this one too:
    sign in again with the new password."""
    trail.begin("user.password.change", target=f"user:{identity.user_id}", caller=identity)
    await management.change_password(
        session=session,
        sessions=request.app.state.sessions,
        caller=identity,
        current=body.current_password,
        new=body.new_password,
        address=_address(request),
        policies=request.app.state.settings.throttle_policies,
    )
    record_success(session, trail)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.post("/users/{user_id}/password", response_model=PasswordResetOut)
async def reset_password(
    user_id: PathId,
    body: PasswordResetRequest,
    admin: TenantAdminDep,
    session: SessionDep,
    trail: AuditDep,
) -> PasswordResetOut:
    """Set a user's new password, or, without ``password``, issue a one-time reset token
    (the old password stops working at once). The user's sessions and tokens end."""
    trail.begin("user.password.reset", target=f"user:{user_id}", caller=admin)
    user, issued = await management.reset_password(
        session=session,
        caller=admin,
        user_id=user_id,
        password=body.password,
        ttl=timedelta(hours=body.ttl_hours),
    )
    trail.note(one_time=issued is not None)
    record_success(session, trail)
    return PasswordResetOut(
        user=_user(user),
        reset_token=issued.token if issued else None,
        expires_at=issued.expires_at if issued else None,
    )


@router.post("/users/{user_id}/disable", response_model=UserOut)
async def disable_user(
    user_id: PathId, admin: TenantAdminDep, session: SessionDep, trail: AuditDep
) -> UserOut:
    """Disable an account: it cannot sign in, and its sessions and tokens end now."""
    trail.begin("user.disable", target=f"user:{user_id}", caller=admin)
    user = await management.set_disabled(
        session=session, caller=admin, user_id=user_id, disabled=True
    )
    record_success(session, trail)
    return _user(user)


@router.post("/users/{user_id}/enable", response_model=UserOut)
async def enable_user(
    user_id: PathId, admin: TenantAdminDep, session: SessionDep, trail: AuditDep
) -> UserOut:
    """Let a disabled account sign in again (its old tokens stay revoked)."""
    trail.begin("user.enable", target=f"user:{user_id}", caller=admin)
    user = await management.set_disabled(
        session=session, caller=admin, user_id=user_id, disabled=False
    )
    record_success(session, trail)
    return _user(user)


@router.post("/auth/reset", status_code=status.HTTP_204_NO_CONTENT)
async def redeem_reset(body: ResetRedeem, session: SessionDep, trail: AuditDep) -> None:
    """Set a new password with a one-time reset token (400 ``reset_invalid`` when it is
    unknown, used, superseded or expired); then sign in with it."""
    entry = trail.begin("auth.reset")
    user = await management.redeem_reset(session=session, token=body.token, password=body.password)
    entry.actor_id, entry.actor_name, entry.target = user.id, user.username, f"user:{user.id}"
    entry.tenant_id = await management.home_tenant_id(session=session, user_id=user.id)
    record_success(session, trail)
