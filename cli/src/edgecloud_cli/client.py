"""A small synchronous client for the gateway's public REST API (``/api/v1``).

Every failure surfaces as one error type, :class:`ApiError`: a problem+json answer keeps its
status, code, detail and the rest of its body; no answer at all (refused, timed out, bad URL)
has status 0.
"""

import contextlib
import itertools
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, NamedTuple, cast
from urllib.parse import quote, urlencode

import httpx
import websockets.exceptions
import websockets.sync.client

from . import __version__
from .schemas import (
    Artifact,
    Command,
    Container,
    CopyOut,
    CreatedToken,
    Deployed,
    Deployment,
    Device,
    ExecResult,
    Interface,
    Login,
    Me,
    Member,
    Migration,
    MigrationAccepted,
    NewArtifact,
    NewContainer,
    PasswordReset,
    Token,
    User,
)

TIMEOUT_S = 10.0
CREATE_TIMEOUT_S = 150.0
"""A create answers once the device has pulled the image and started the container, which the
orchestrator waits up to 120 s for."""
ACTION_TIMEOUT_S = 30.0
"""Start, stop, restart and remove wait up to 15 s for the device."""
EVENTS_READ_TIMEOUT_S = 60.0
"""The event stream sends a keepalive every 15 s; silence for longer means it is dead."""
UPLOAD_TIMEOUT_S = 120.0
"""The answer to an artifact's last piece comes once the storage has checked its SHA-256."""
DOWNLOAD_READ_TIMEOUT_S = 60.0
NO_ANSWER = 0
"""The status of an :class:`ApiError` raised when the gateway did not answer."""


class ApiError(Exception):
    """The gateway answered with an error, or (``status == NO_ANSWER``) did not answer.

    ``body`` is the whole problem+json answer: validation errors list the ``fields`` (and
    ``errors``), a device's refusal names the ``container`` and ``command``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        retry_after: str | None = None,
        body: Mapping[str, Any] | None = None,
    ):
        super().__init__(f"{detail} ({code})")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.body: Mapping[str, Any] = body or {}


class Outcome(NamedTuple):
    """What a container request did: ``queued`` (202) when the device has not done it yet,
    in which case ``container["command"]`` is the waiting command. ``container`` is None
    once removed."""

    container: Container | None
    queued: bool


class Uploaded(NamedTuple):
    """Where an upload stands: the bytes stored so far, and the artifact once complete."""

    offset: int
    artifact: Artifact | None


class Stream:
    """An open streamed answer (events, logs, an artifact's bytes), read as it arrives; a
    broken connection surfaces as an :class:`ApiError` with no status."""

    def __init__(self, response: httpx.Response, what: str) -> None:
        self._response = response
        self._what = what

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self._response.headers

    def lines(self) -> Iterator[str]:
        with self._broken():
            yield from self._response.iter_lines()

    def chunks(self) -> Iterator[bytes]:
        with self._broken():
            yield from self._response.iter_bytes()

    @contextlib.contextmanager
    def _broken(self) -> Iterator[None]:
        try:
            yield
        except httpx.HTTPError as err:
            raise ApiError(NO_ANSWER, "stream_ended", f"the {self._what} ended: {err}") from err

    def interrupt(self) -> None:
        """End a read blocked in another thread: closing a socket does not wake a thread
        blocked on it, shutting it down does."""
        network = self._response.extensions.get("network_stream")
        sock = network.get_extra_info("socket") if network is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _unreachable(base_url: str, err: BaseException) -> ApiError:
    """No answer; said plainly when it is the gateway's certificate that failed to verify."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or str(cause)
            return ApiError(
                NO_ANSWER,
                "certificate_not_trusted",
                f"cannot verify the certificate of {base_url}: {detail}"
                " (a private CA? pass --ca-bundle or set EDGECLOUD_CA_BUNDLE)",
            )
        cause = cause.__cause__ or cause.__context__
    return ApiError(NO_ANSWER, "unreachable", f"cannot reach {base_url}")


class Client:
    """The public API as seen by one caller; use it as a context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = TIMEOUT_S,
        ca_bundle: Path | None = None,
    ) -> None:
        """``ca_bundle``: PEM file of the authorities trusted for an ``https://`` gateway
        (a private CA); None: the system's. The certificate is always verified."""
        self.base_url = base_url
        self._token = token
        self._timeout = timeout
        try:
            self._tls = ssl.create_default_context(
                cafile=str(ca_bundle) if ca_bundle is not None else None
            )
        except (OSError, ssl.SSLError) as err:
            raise ApiError(
                NO_ANSWER, "invalid_ca_bundle", f"cannot use the CA bundle {ca_bundle}: {err}"
            ) from err
        headers = {"User-Agent": f"edgecloud-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # The gateway's session cookie is for the dashboard; we authenticate with the bearer
        # token alone, so a jar that accepts no cookie keeps requests from mixing the two.
        jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        try:
            self._http = httpx.Client(
                base_url=base_url,
                headers=headers,
                cookies=jar,
                timeout=timeout,
                transport=transport,
                verify=self._tls,
            )
        except httpx.InvalidURL as err:
            raise ApiError(NO_ANSWER, "invalid_url", f"invalid URL {base_url}: {err}") from err

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def login(self, *, username: str, password: str) -> Login:
        """Exchange a username and password for a bearer token."""
        payload = {"username": username, "password": password}
        return cast(Login, self._json("POST", "/api/v1/auth/login", json=payload))

    def logout(self) -> None:
        """Revoke the token this client uses."""
        self._request("POST", "/api/v1/auth/logout")

    def me(self) -> Me:
        """The caller: user, current tenant and roles."""
        return cast(Me, self._json("GET", "/api/v1/me"))

    def devices(self) -> list[Device]:
        """Every device visible to the caller, all pages."""
        return cast(list[Device], list(self._pages("/api/v1/devices")))

    def tokens(self) -> list[Token]:
        """The caller's live API tokens, all pages."""
        return cast(list[Token], list(self._pages("/api/v1/tokens")))

    def create_token(self, *, name: str, expires_in_days: int) -> CreatedToken:
        """A new named API token; its value is in the answer and nowhere else."""
        payload = {"name": name, "expires_in_days": expires_in_days}
        return cast(CreatedToken, self._json("POST", "/api/v1/tokens", json=payload))

    def revoke_token(self, token_id: str) -> None:
        """Revoke one of the caller's API tokens."""
        self._request("DELETE", f"/api/v1/tokens/{_segment(token_id)}")

    def change_password(self, *, current: str, new: str) -> None:
        """Change the caller's password; every session and token of theirs ends."""
        payload = {"current_password": current, "new_password": new}
        self._request("POST", "/api/v1/me/password", json=payload)

    def members(self) -> list[Member]:
        """The members of the caller's tenant (tenant admins), all pages."""
        return cast(list[Member], list(self._pages("/api/v1/members")))

    def reset_password(self, user_id: str, *, password: str | None) -> PasswordReset:
        """Set a user's password, or (``password`` None) issue a one-time reset token."""
        payload = {"password": password} if password is not None else {}
        path = f"/api/v1/users/{_segment(user_id)}/password"
        return cast(PasswordReset, self._json("POST", path, json=payload))

    def set_disabled(self, user_id: str, *, disabled: bool) -> User:
        """Disable an account (its sessions and tokens end) or enable it again."""
        action = "disable" if disabled else "enable"
        return cast(User, self._json("POST", f"/api/v1/users/{_segment(user_id)}/{action}"))

    def create_container(self, request: NewContainer) -> Outcome:
        """Create and start a container; queued while the device is offline or busy."""
        response = self._request(
            "POST", "/api/v1/containers", json=request, timeout=CREATE_TIMEOUT_S
        )
        return Outcome(cast(Container, _body(response)), queued=response.status_code == 202)

    def containers(self, *, device: str | None = None) -> list[Container]:
        """The tenant's containers, newest first, all pages."""
        params = {"device": device} if device else {}
        return cast(list[Container], list(self._pages("/api/v1/containers", params)))

    def container(self, container_id: str, *, live: bool = False) -> Container:
        """One container; ``live`` asks its device for the state first."""
        params = {"live": "true"} if live else None
        path = f"/api/v1/containers/{_segment(container_id)}"
        return cast(Container, self._json("GET", path, params=params, timeout=ACTION_TIMEOUT_S))

    def act(self, container_id: str, action: str) -> Outcome:
        """``start``, ``stop`` or ``restart`` a container."""
        path = f"/api/v1/containers/{_segment(container_id)}/{action}"
        response = self._request("POST", path, timeout=ACTION_TIMEOUT_S)
        return Outcome(cast(Container, _body(response)), queued=response.status_code == 202)

    def remove_container(self, container_id: str) -> Outcome:
        """Remove a container: gone (no container in the outcome) or queued."""
        path = f"/api/v1/containers/{_segment(container_id)}"
        response = self._request("DELETE", path, timeout=ACTION_TIMEOUT_S)
        if response.status_code == 204:
            return Outcome(None, queued=False)
        return Outcome(cast(Container, _body(response)), queued=response.status_code == 202)

    def command(self, command_id: str) -> Command:
        """A command sent (or waiting to be sent) to a device."""
        return cast(Command, self._json("GET", f"/api/v1/commands/{_segment(command_id)}"))

    @contextlib.contextmanager
    def events(self) -> Iterator[Stream]:
        """The tenant's live events, open until the block ends."""
        timeout = httpx.Timeout(self._timeout, read=EVENTS_READ_TIMEOUT_S)
        headers = {"Accept": "text/event-stream"}
        with self._stream("GET", "/api/v1/events", "event stream", headers, timeout) as stream:
            yield stream

    # Artifacts, deployments, logs and files

    def create_artifact(self, request: NewArtifact) -> Artifact:
        """Announce an upload; its bytes follow with :meth:`upload_piece`."""
        return cast(Artifact, self._json("POST", "/api/v1/artifacts", json=request))

    def artifact(self, artifact_id: str) -> Artifact:
        return cast(Artifact, self._json("GET", f"/api/v1/artifacts/{_segment(artifact_id)}"))

    def upload_piece(
        self, upload_url: str, body: Iterable[bytes], *, start: int, length: int, total: int
    ) -> Uploaded:
        """Bytes ``start`` to ``start + length`` of an upload of ``total`` bytes, streamed
        from ``body``; a 409 ``offset_mismatch`` carries the offset to go on from."""
        headers = {
            "Content-Range": f"bytes {start}-{start + length - 1}/{total}",
            # Given, so that httpx sends the pieces as they come instead of chunked.
            "Content-Length": str(length),
            "Content-Type": "application/octet-stream",
        }
        url = self._same_origin(upload_url)
        response = self._request(
            "PATCH", url, content=body, headers=headers, timeout=UPLOAD_TIMEOUT_S
        )
        return _uploaded(response)

    def upload_offset(self, upload_url: str, *, total: int) -> Uploaded:
        """Where an interrupted upload goes on (``Content-Range: bytes */total``)."""
        headers = {"Content-Range": f"bytes */{total}"}
        url = self._same_origin(upload_url)
        return _uploaded(self._request("PATCH", url, content=b"", headers=headers))

    @contextlib.contextmanager
    def download(self, artifact_id: str, *, start: int = 0) -> Iterator[Stream]:
        """An artifact's bytes from ``start`` on (206; 200 when the range was ignored)."""
        headers = {"Accept": "*/*", **({"Range": f"bytes={start}-"} if start else {})}
        timeout = httpx.Timeout(self._timeout, read=DOWNLOAD_READ_TIMEOUT_S)
        path = f"/api/v1/artifacts/{_segment(artifact_id)}/content"
        with self._stream("GET", path, "download", headers, timeout) as stream:
            yield stream

    def deploy(self, container_id: str, *, artifact: str, script: str) -> Deployed:
        """Bring an application archive into a container and run its script there."""
        path = f"/api/v1/containers/{_segment(container_id)}/deploy"
        payload = {"artifact": artifact, "script": script}
        return cast(Deployed, self._json("POST", path, json=payload, timeout=ACTION_TIMEOUT_S))

    def deployment(self, deployment_id: str) -> Deployment:
        path = f"/api/v1/deployments/{_segment(deployment_id)}"
        return cast(Deployment, self._json("GET", path))

    @contextlib.contextmanager
    def logs(self, container_id: str, *, tail: int, follow: bool = False) -> Iterator[Stream]:
        """A container's output: ``text/plain``, or followed, ``text/event-stream`` with
        no read timeout (a quiet container may say nothing for hours)."""
        params = {"tail": str(tail), **({"follow": "true"} if follow else {})}
        accept = "text/event-stream" if follow else "text/plain"
        read = None if follow else ACTION_TIMEOUT_S
        timeout = httpx.Timeout(self._timeout, read=read)
        path = f"/api/v1/containers/{_segment(container_id)}/logs"
        with self._stream(
            "GET", path, "log stream", {"Accept": accept}, timeout, params=params
        ) as stream:
            yield stream

    def copy_from(self, container_id: str, path: str) -> CopyOut:
        """Ask the device to make a file or directory of the container an artifact."""
        url = f"/api/v1/containers/{_segment(container_id)}/files"
        answer = self._json("POST", url, json={"path": path}, timeout=ACTION_TIMEOUT_S)
        return cast(CopyOut, answer)

    # Hardware interfaces and sensor streams of a device

    def interfaces(self, device: str) -> list[Interface]:
        path = f"/api/v1/devices/{_segment(device)}/interfaces"
        return cast(list[Interface], self._json("GET", path))

    def declare_interface(self, device: str, name: str, declaration: dict[str, Any]) -> Interface:
        path = f"/api/v1/devices/{_segment(device)}/interfaces/{_segment(name)}"
        return cast(Interface, self._json("PUT", path, json=declaration))

    def remove_interface(self, device: str, name: str) -> None:
        path = f"/api/v1/devices/{_segment(device)}/interfaces/{_segment(name)}"
        self._request("DELETE", path)

    # Commands and shells inside containers

    def exec(self, container_id: str, cmd: list[str], *, timeout_s: float) -> ExecResult:
        """Run ``cmd`` inside the container; the answer comes once it has ended."""
        path = f"/api/v1/containers/{_segment(container_id)}/exec"
        payload = {"cmd": cmd, "timeout_s": timeout_s}
        answer = self._json("POST", path, json=payload, timeout=timeout_s + ACTION_TIMEOUT_S)
        return cast(ExecResult, answer)

    def shell(
        self, container_id: str, *, cmd: list[str], cols: int, rows: int
    ) -> websockets.sync.client.ClientConnection:
        """Open an interactive shell's WebSocket (protocol: the gateway's terminal bridge)."""
        base = httpx.URL(self.base_url)
        query = [("cmd", part) for part in cmd] + [("cols", str(cols)), ("rows", str(rows))]
        url = base.copy_with(
            scheme="wss" if base.scheme == "https" else "ws",
            path=f"{base.path.rstrip('/')}/api/v1/containers/{_segment(container_id)}/shell",
            query=urlencode(query).encode(),
        )
        headers = {"User-Agent": f"edgecloud-cli/{__version__}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            return websockets.sync.client.connect(
                str(url),
                additional_headers=headers,
                open_timeout=self._timeout,
                ssl=self._tls if url.scheme == "wss" else None,
            )
        except websockets.exceptions.InvalidStatus as err:
            raise _error_from(
                httpx.Response(
                    err.response.status_code,
                    headers=dict(err.response.headers.raw_items()),
                    content=bytes(err.response.body or b""),
                )
            ) from err
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as err:
            raise _unreachable(self.base_url, err) from err

    # Migrations

    def migrate(self, container_id: str, *, device: str | None = None) -> MigrationAccepted:
        """Move a container to ``device``, or (None) to the one the scheduler picks."""
        path = f"/api/v1/containers/{_segment(container_id)}/migrate"
        payload = {"device": device}
        answer = self._json("POST", path, json=payload, timeout=ACTION_TIMEOUT_S)
        return cast(MigrationAccepted, answer)

    def migration(self, migration_id: str) -> Migration:
        path = f"/api/v1/migrations/{_segment(migration_id)}"
        return cast(Migration, self._json("GET", path))

    def migrations(self, *, container: str | None = None, limit: int) -> list[Migration]:
        """The ``limit`` newest migrations (one page), of one container when given."""
        params = {"limit": str(limit), **({"container": container} if container else {})}
        # The first page holds them all: islice stops before a next one is asked for.
        newest = itertools.islice(self._pages("/api/v1/migrations", params), limit)
        return cast(list[Migration], list(newest))

    @contextlib.contextmanager
    def _stream(
        self,
        method: str,
        path: str,
        what: str,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
        *,
        params: Mapping[str, str] | None = None,
    ) -> Iterator[Stream]:
        request = self._http.build_request(
            method, path, headers=headers, params=params, timeout=timeout
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as err:
            raise _unreachable(self.base_url, err) from err
        try:
            if response.is_error:
                response.read()
                raise _error_from(response)
            yield Stream(response, what)
        finally:
            response.close()

    def _same_origin(self, url: str) -> str:
        """A URL the gateway gave, refused when absolute and elsewhere: the bearer token
        goes with every request."""
        given = httpx.URL(url)
        if given.is_relative_url:
            return url
        base = httpx.URL(self.base_url)
        if (given.scheme, given.host, given.port) != (base.scheme, base.host, base.port):
            raise ApiError(200, "invalid_response", f"the gateway pointed elsewhere: {url}")
        return url

    def _pages(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            query = {**(params or {}), **({"cursor": cursor} if cursor else {})}
            page = self._json("GET", path, params=query or None)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise ApiError(200, "invalid_response", f"{path} did not answer with a list")
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _body(self._request(method, path, **kwargs))

    def _request(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        timeout = timeout or self._timeout
        try:
            response = self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.ConnectTimeout as err:
            raise ApiError(NO_ANSWER, "unreachable", f"cannot reach {self.base_url}") from err
        except httpx.TimeoutException as err:
            raise ApiError(
                NO_ANSWER, "timeout", f"{self.base_url} did not answer within {timeout:g} s"
            ) from err
        except (httpx.TransportError, httpx.InvalidURL) as err:
            raise _unreachable(self.base_url, err) from err
        if response.is_error:
            raise _error_from(response)
        return response


def _segment(value: str) -> str:
    """An id as one path segment, whatever it contains."""
    return quote(value, safe="")


def _uploaded(response: httpx.Response) -> Uploaded:
    """200: complete, with the artifact; 204: ``Upload-Offset`` says how far it got."""
    if response.status_code == 200:
        artifact = cast(Artifact, _body(response))
        return Uploaded(artifact["received"], artifact)
    offset = response.headers.get("Upload-Offset", "")
    if not offset.isdigit():
        raise ApiError(
            response.status_code, "invalid_response", "the upload answer has no Upload-Offset"
        )
    return Uploaded(int(offset), None)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as err:
        raise ApiError(
            response.status_code,
            "invalid_response",
            f"{response.request.url.path} did not answer with JSON",
        ) from err


def _error_from(response: httpx.Response) -> ApiError:
    """Translate an error answer; proxies in between may answer with something else than
    problem+json, so fall back to the HTTP status."""
    retry_after = response.headers.get("Retry-After")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        detail = body.get("detail") or body.get("title") or response.reason_phrase
        return ApiError(response.status_code, body["code"], str(detail), retry_after, body)
    return ApiError(
        response.status_code,
        f"http_{response.status_code}",
        response.reason_phrase or "error",
        retry_after,
    )
