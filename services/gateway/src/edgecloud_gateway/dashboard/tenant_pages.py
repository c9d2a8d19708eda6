"""The tenant's own affairs: members and invitations, API tokens, the audit log, and the
migration history."""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .api import ApiError, segment
from .render import ActingViewerDep, Viewer, ViewerDep, form_values, page

router = APIRouter(include_in_schema=False)


async def _admin_context(viewer: Viewer) -> dict[str, Any]:
    if not viewer.is_admin:  # members, invitations and the audit log are the admins' business
        return {"tokens": await viewer.api.all_pages("/tokens")}
    tokens, audit, members, invitations = await asyncio.gather(
        viewer.api.all_pages("/tokens"),
        viewer.api.get("/audit", limit=50),
        viewer.api.all_pages("/members"),
        viewer.api.all_pages("/invitations"),
    )
    return {
        "tokens": tokens,
        "audit": audit["items"],
        "members": members,
        "invitations": invitations,
    }


async def _admin_panel(
    request: Request, viewer: Viewer, *, error: ApiError | None = None, **shown: Any
) -> HTMLResponse:
    return page(
        request,
        "_admin_panels.html",
        viewer,
        error=error,
        **shown,
        **(await _admin_context(viewer)),
    )


@router.get("/admin", response_class=HTMLResponse)
async def admin(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "admin.html", viewer, **(await _admin_context(viewer)))


@router.post("/admin/tokens", response_class=HTMLResponse)
async def create_token(request: Request, viewer: ActingViewerDep) -> HTMLResponse:
    values = form_values(await request.form())
    body: dict[str, Any] = {"name": values.get("name", "")}
    if values.get("expires_in_days"):
        body["expires_in_days"] = values["expires_in_days"]
    try:
        created = await viewer.api.post("/tokens", body)
    except ApiError as err:
        return await _admin_panel(request, viewer, error=err, failed_form="token")
    return await _admin_panel(request, viewer, new_token=created)


@router.post("/admin/tokens/{token_id}/revoke", response_class=HTMLResponse)
async def revoke_token(request: Request, token_id: str, viewer: ActingViewerDep) -> HTMLResponse:
    await viewer.api.delete(f"/tokens/{segment(token_id)}")
    return await _admin_panel(request, viewer, notice="The token is revoked.")


@router.post("/admin/invitations", response_class=HTMLResponse)
async def invite(request: Request, viewer: ActingViewerDep) -> HTMLResponse:
    values = form_values(await request.form())
    body = {"role": values.get("role") or "member", "note": values.get("note", "")}
    try:
        created = await viewer.api.post("/invitations", body)
    except ApiError as err:
        return await _admin_panel(request, viewer, error=err, failed_form="invitation")
    # The address users reach us at, not whatever Host header this request carried.
    public_url = request.app.state.settings.public_url.rstrip("/")
    link = f"{public_url}/signup?invitation={created['token']}"
    return await _admin_panel(request, viewer, new_invitation=created, invitation_link=link)


@router.post("/admin/invitations/{invitation_id}/revoke", response_class=HTMLResponse)
async def revoke_invitation(
    request: Request, invitation_id: str, viewer: ActingViewerDep
) -> HTMLResponse:
    await viewer.api.delete(f"/invitations/{segment(invitation_id)}")
    return await _admin_panel(request, viewer, notice="The invitation is revoked.")


@router.post("/admin/members/{user_id}", response_class=HTMLResponse)
async def change_member(request: Request, user_id: str, viewer: ActingViewerDep) -> HTMLResponse:
    values = form_values(await request.form())
    user_id = segment(user_id)
    try:
        if values.get("remove"):
            await viewer.api.delete(f"/members/{user_id}")
        else:
            await viewer.api.patch(f"/members/{user_id}", {"role": values.get("role", "")})
    except ApiError as err:
        return await _admin_panel(request, viewer, error=err, failed_form="member")
    return await _admin_panel(request, viewer, notice="Membership updated.")


@router.post("/admin/users/{user_id}", response_class=HTMLResponse)
async def manage_user(request: Request, user_id: str, viewer: ActingViewerDep) -> HTMLResponse:
    """Reset a member's password (a one-time token), disable or enable their account."""
    action = form_values(await request.form()).get("action", "")
    user_id = segment(user_id)
    try:
        if action == "reset":
            reset = await viewer.api.post(f"/users/{user_id}/password", {})
            return await _admin_panel(request, viewer, new_reset=reset)
        if action not in ("disable", "enable"):
            raise ApiError.invalid({"action": "must be reset, disable or enable"})
        user = await viewer.api.post(f"/users/{user_id}/{action}", {})
    except ApiError as err:
        return await _admin_panel(request, viewer, error=err, failed_form="member")
    return await _admin_panel(request, viewer, notice=f"{user['username']} is {action}d.")


@router.get("/migrations", response_class=HTMLResponse)
async def migrations(request: Request, viewer: ViewerDep, container: str = "") -> HTMLResponse:
    """The latest migrations (of one container when asked); its rows refresh live."""
    listed = await viewer.api.get("/migrations", limit=100, container=container)
    parts = {"migration-rows": "_migration_rows.html"}
    return page(
        request,
        "migrations.html",
        viewer,
        parts=parts,
        migrations=listed["items"],
        container=container,
    )
