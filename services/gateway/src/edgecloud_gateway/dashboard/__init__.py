"""The web dashboard: server-rendered pages (Jinja2 + htmx), live through the API's SSE stream.

Pages read and act through the public API in-process (:mod:`.api`), so the dashboard has no
powers of its own. Front-end assets are vendored by infra/setup/assets.sh.
"""

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from . import account_pages, alert_pages, fleet_pages, tenant_pages, workload_pages
from .api import ApiError
from .render import SignInRequired, is_htmx, page, to_sign_in


async def _sign_in_first(request: Request, _: Exception) -> Response:
    return to_sign_in(request)


async def _refused(request: Request, exc: Exception) -> Response:
    """An action the API refused, outside a form that shows it in place: htmx shows the words
    in a notice (dashboard.js); a whole page is replaced by one that explains."""
    assert isinstance(exc, ApiError)
    if exc.status == 401:
        return to_sign_in(request)
    if is_htmx(request):
        return PlainTextResponse(exc.message, status_code=exc.status)
    return page(request, "problem.html", None, status_code=exc.status, error=exc)


def install(app: FastAPI) -> None:
    for module in (account_pages, fleet_pages, workload_pages, alert_pages, tenant_pages):
        app.include_router(module.router)
    app.add_exception_handler(SignInRequired, _sign_in_first)
    app.add_exception_handler(ApiError, _refused)
