"""Public REST: signing up, in and out, and who am I."""

from fastapi import APIRouter, Depends, Request, Response, status

from ..audit.trail import AuditDep, record_success
from ..deps import CSRF_COOKIE, SESSION_COOKIE, CallerDep, SessionDep
from ..settings import GatewaySettings
from ..tokens import service as tokens_service
from . import service
from .exceptions import JsonRequired, NotASession
from .schemas import (
    LoginRequest,
    LoginResponse,
    MembershipOut,
    MeOut,
    RegisterRequest,
    RegisterResponse,
    SwitchRequest,
    TenantOut,
    UserOut,
)

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_session_cookies(response: Response, token: str, settings: GatewaySettings) -> str:
    """The dashboard's session: the token in an HttpOnly cookie, and its CSRF token in one the
    page's script can read and echo in X-CSRF-Token. Returns the CSRF token."""
    csrf = tokens_service.csrf_token_for(token, secret=settings.secret)
    max_age = int(settings.login_token_lifetime.total_seconds())
    for name, value, httponly in ((SESSION_COOKIE, token, True), (CSRF_COOKIE, csrf, False)):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=httponly,
            samesite="lax",
            secure=bool(settings.cookie_secure),  # resolved by the settings validator
            path="/",
        )
    return csrf


async def _json_only(request: Request) -> None:
    """Sign-up and sign-in take a JSON body only, which keeps them out of reach of other
    sites (login CSRF) without a token: what a page elsewhere can send without asking is a
    form (urlencoded, multipart, text/plain) or a body without a type, refused here; JSON
    it can send only after a CORS preflight, which the gateway never answers. Scripts and
    the CLI send JSON and hold no cookie to abuse; the dashboard's own sign-in and sign-up
    forms carry a token of their own (dashboard/presession.py)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise JsonRequired()


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=RegisterResponse,
    dependencies=[Depends(_json_only)],
)
async def register(
    body: RegisterRequest, request: Request, session: SessionDep, trail: AuditDep
) -> RegisterResponse:
    """Create an account: with an invitation, in its tenant; otherwise (when registration
    is open) with a new tenant of its own, whose admin the user becomes."""
    settings = request.app.state.settings
    entry = trail.begin("auth.register", target=f"user:{body.username}")
    registered = await service.register(
        session=session,
        username=body.username,
        password=body.password,
        tenant_name=body.tenant,
        invitation_token=body.invitation,
        open_registration=settings.registration == "open",
        quotas=settings.default_quotas,
    )
    entry.tenant_id, entry.actor_id, entry.actor_name = (
        registered.tenant.id,
        registered.user.id,
        registered.user.username,
    )
    trail.note(role=registered.role, invited=body.invitation is not None)
    record_success(session, trail)
    return RegisterResponse(
        user=UserOut(
            id=registered.user.id,
            username=registered.user.username,
            created_at=registered.user.created_at,
        ),
        tenant=TenantOut(id=registered.tenant.id, name=registered.tenant.name),
        role=registered.role,
    )


@router.post("/auth/login", response_model=LoginResponse, dependencies=[Depends(_json_only)])
async def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, trail: AuditDep
) -> LoginResponse:
    """Exchange a username and password for a bearer token (and a dashboard session).

    Repeated failures are slowed down, never locked out (429 ``login_throttled`` with
    Retry-After): see accounts/throttle.py.
    """
    settings = request.app.state.settings
    entry = trail.begin("auth.login", target=f"user:{body.username}")
    issued, _ = await service.sign_in(
        session=session,
        sessions=request.app.state.sessions,
        username=body.username,
        password=body.password,
        tenant_name=body.tenant,
        address=_address(request),
        lifetime=settings.login_token_lifetime,
        policies=settings.throttle_policies,
        audit=entry,
    )
    record_success(session, trail)
    csrf = _set_session_cookies(response, issued.token, settings)
    return LoginResponse(access_token=issued.token, expires_at=issued.expires_at, csrf_token=csrf)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    caller: CallerDep, session: SessionDep, response: Response, trail: AuditDep
) -> None:
    """Revoke the token this request used and clear the dashboard's cookies."""
    trail.begin("auth.logout", target=f"token:{caller.token_id}", caller=caller.identity)
    await tokens_service.revoke_token(session=session, token_id=caller.token_id)
    record_success(session, trail)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.post("/auth/switch", response_model=LoginResponse)
async def switch_tenant(
    body: SwitchRequest,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    response: Response,
    trail: AuditDep,
) -> LoginResponse:
    """Move this session to another tenant the user belongs to: a new token replaces the
    one this request used (which is revoked), with fresh dashboard cookies. API tokens are
    refused (403 ``not_a_session``): a script's token stays where it was made."""
    settings = request.app.state.settings
    trail.begin("auth.switch", target=f"tenant:{body.tenant}", caller=caller.identity)
    if caller.token_kind != tokens_service.LOGIN:
        raise NotASession()
    issued = await service.switch_tenant(
        session=session,
        caller=caller.identity,
        token_id=caller.token_id,
        tenant_name=body.tenant,
        lifetime=settings.login_token_lifetime,
    )
    record_success(session, trail)
    csrf = _set_session_cookies(response, issued.token, settings)
    return LoginResponse(access_token=issued.token, expires_at=issued.expires_at, csrf_token=csrf)


@router.get("/me", response_model=MeOut)
async def me(caller: CallerDep, session: SessionDep) -> MeOut:
    user, tenant, memberships = await service.describe(session=session, identity=caller.identity)
    return MeOut(
        user=UserOut(id=user.id, username=user.username, created_at=user.created_at),
        tenant=TenantOut(id=tenant.id, name=tenant.name),
        roles=sorted(caller.identity.roles),
        tenants=[
            MembershipOut(tenant=TenantOut(id=t.id, name=t.name), role=m.role)
            for m, t in memberships
        ],
    )
