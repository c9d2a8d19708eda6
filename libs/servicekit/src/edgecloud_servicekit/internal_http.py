"""Calling another service's internal REST API on behalf of a caller."""

from typing import Any

import httpx
from starlette.responses import Response

from .identity import IDENTITY_HEADER, Identity, sign_identity
from .problems import RemoteProblem, Unavailable

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class ServiceClient:
    """An httpx client for one service that signs the caller's identity into each request."""

    def __init__(
        self, *, service: str, base_url: str, secret: str, timeout: httpx.Timeout = DEFAULT_TIMEOUT
    ) -> None:
        self.service = service
        self._secret = secret
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        identity: Identity,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send the request; a problem answer is raised as :class:`RemoteProblem`."""
        token = sign_identity(identity, secret=self._secret, audience=self.service)
        try:
            response = await self._client.request(
                method,
                path,
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers={IDENTITY_HEADER: token},
            )
        except httpx.TimeoutException as err:
            raise Unavailable(
                f"{self.service} did not answer in time", code="upstream_timeout"
            ) from err
        except httpx.TransportError as err:
            raise Unavailable(
                f"{self.service} is unreachable", code="upstream_unavailable"
            ) from err
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500], "code": "upstream_error"}
            raise RemoteProblem(response.status_code, body)
        return response


def passed_on(answer: httpx.Response) -> Response:
    """Another service's answer, unchanged: its JSON was made from our own contract models,
    so parsing and serialising it again would only cost time."""
    if answer.status_code == 204:
        return Response(status_code=204)
    return Response(
        content=answer.content, status_code=answer.status_code, media_type="application/json"
    )
