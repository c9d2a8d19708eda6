"""Public REST: signing in and out, and who am I."""

from fastapi import APIRouter, Request, Response, status

from ..deps import CSRF_COOKIE, SESSION_COOKIE, CallerDep, SessionDep
from . import service
from .schemas import LoginRequest, LoginResponse, MeOut, TenantOut, UserOut

router = APIRouter(prefix="/api/v1", tags=["accounts"])


@router.post("/auth/login", response_model=LoginResponse)
async def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep
) -> LoginResponse:
    """Exchange a username and password for a bearer token (and a dashboard session)."""
    settings = request.app.state.settings
    issued, _ = await service.login(
        session=session,
        username=body.username,
        password=body.password,
        lifetime=settings.login_token_lifetime,
    )
    csrf = service.csrf_token_for(issued.token, secret=settings.secret)
    max_age = int(settings.login_token_lifetime.total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )
    # Readable by the dashboard's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=max_age,
        httponly=False,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )
    return LoginResponse(access_token=issued.token, expires_at=issued.expires_at, csrf_token=csrf)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(caller: CallerDep, session: SessionDep, response: Response) -> None:
    """Revoke the token this request used and clear the dashboard's cookies."""
    await service.revoke_token(session=session, token_id=caller.token_id)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.get("/me", response_model=MeOut)
async def me(caller: CallerDep, session: SessionDep) -> MeOut:
    user, tenant = await service.describe(session=session, identity=caller.identity)
    return MeOut(
        user=UserOut(id=user.id, username=user.username, created_at=user.created_at),
        tenant=TenantOut(id=tenant.id, name=tenant.name),
        roles=sorted(caller.identity.roles),
    )
