"""The node's Docker Engine, through aiodocker (used only in this module).

An engine that is down or missing is a normal state on an edge node: the agent keeps
running, reports the runtime as unavailable, and reconnects when it is back. Every call
has a deadline and every aiodocker error leaves this module as one of ours
(:mod:`.errors`). Tenant containers are addressed by Docker name *and* our container-id
label, so a stale or wrong command can never touch a container the cloud did not make.
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiodocker
import aiodocker.execs
import aiodocker.stream
import aiohttp
import psutil

from edgecloud_contracts.containers import ContainerReport, ContainerSpec, LogLine
from edgecloud_contracts.heartbeat import ContainerState

from . import reports
from .errors import (
    ContainerNotFound,
    FilesTooLarge,
    ImageBuildFailed,
    ImageLoadFailed,
    ImagePullFailed,
    NameConflict,
    PathNotFound,
    RuntimeFailure,
    RuntimeTimeout,
    RuntimeUnavailable,
)
from .hardening import (
    DOCKER_NAME,
    LABEL_CONTAINER_ID,
    LABEL_MANAGED,
    LABEL_TENANT,
    ContainerPolicy,
    Placement,
    app_volume,
    create_body,
)
from .reports import PullCallback, PullTracker

__all__ = ["DockerRuntime", "RuntimeUnavailable"]

logger = logging.getLogger(__name__)

_EVENTS = ["create", "start", "restart", "die", "pause", "unpause", "destroy"]
_RESUBSCRIBE_MAX_S = 10.0


class DockerRuntime:
    def __init__(
        self,
        *,
        url: str | None = None,
        timeout_s: float = 10.0,
        pull_timeout_s: float = 600.0,
        policy: ContainerPolicy | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout_s
        self._pull_timeout = pull_timeout_s
        # Copies in and out move application-sized data: as long as a pull may take.
        self._transfer_timeout = pull_timeout_s
        self.policy = policy or ContainerPolicy()
        self._docker: aiodocker.Docker | None = None
        self._reachable = True

    async def __aenter__(self) -> "DockerRuntime":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self._url)
        return self._docker

    def _note(self, reachable: bool, error: Exception | None = None) -> None:
        if reachable and not self._reachable:
            logger.info("Docker engine is reachable again")
        elif not reachable and self._reachable:
            logger.error("Docker engine unreachable: %s", error)
        self._reachable = reachable

    @asynccontextmanager
    async def _calling(self, what: str, timeout: float) -> AsyncIterator[None]:
        """Run one Engine API exchange with a deadline; translate what goes wrong."""
        try:
            async with asyncio.timeout(timeout):
                yield
        except TimeoutError as err:
            raise RuntimeTimeout(f"{what}: no answer from Docker after {timeout:g}s") from err
        except aiodocker.DockerError as err:
            if err.status == 900:  # aiodocker's code for "cannot connect"
                await self._unreachable(err)
                raise RuntimeUnavailable(f"{what}: {err.message}") from err
            self._note(True)
            raise RuntimeFailure(f"{what}: {err.message}", status=err.status) from err
        except (OSError, ValueError, aiohttp.ClientError) as err:
            await self._unreachable(err)
            raise RuntimeUnavailable(f"{what}: {err}") from err
        self._note(True)

    async def _unreachable(self, err: Exception) -> None:
        self._note(False, err)
        # A fresh client next time: the engine may come back on a new socket.
        await self._close()

    async def list_containers(self) -> list[ContainerState]:
        """Every container on the engine, running or not.

        Any failure is :class:`RuntimeUnavailable`: the heartbeat then says so.
        """
        try:
            async with self._calling("list containers", self._timeout):
                raw = await self._client().containers.list(all=True)
        except RuntimeUnavailable:
            raise
        except RuntimeFailure as err:
            raise RuntimeUnavailable(err.message) from err
        return [reports.summary(container._container) for container in raw]

    async def _inspect_raw(self, name_or_id: str) -> dict[str, Any] | None:
        if not DOCKER_NAME.match(name_or_id):
            return None
        try:
            async with self._calling(f"inspect {name_or_id}", self._timeout):
                container = await self._client().containers.get(name_or_id)
        except RuntimeFailure as err:
            if err.status == 404:
                return None
            raise
        return container._container

    async def managed_containers(self) -> list[ContainerReport]:
        """Every container this node runs for the cloud (labelled by us), as reports."""
        async with self._calling("list managed containers", self._timeout):
            listed: list[Any] = await self._client().containers.list(
                all=True, filters=json.dumps({"label": [f"{LABEL_MANAGED}=true"]})
            )
        found = []
        for container in listed:
            data = await self._inspect_raw(container.id)
            if data is not None:
                found.append(reports.from_inspect(data))
        return found

    async def inspect(self, docker_name: str) -> ContainerReport | None:
        """The container of that name (ours or not), or None."""
        data = await self._inspect_raw(docker_name)
        return reports.from_inspect(data) if data is not None else None

    async def _owned(self, docker_name: str, container_id: str) -> dict[str, Any]:
        """The container ``docker_name`` if it carries our label for ``container_id``."""
        data = await self._inspect_raw(docker_name)
        if data is None or reports.label(data, LABEL_CONTAINER_ID) != container_id:
            raise ContainerNotFound(f"no container {docker_name} for {container_id} on this node")
        return data

    async def image_of(self, docker_name: str, *, container_id: str) -> str:
        """The ID of the image our container ``docker_name`` was made from."""
        data = await self._owned(docker_name, container_id)
        return str(data.get("Image", ""))

    async def tenant_of(self, docker_name: str, *, container_id: str) -> str | None:
        """The tenant label of our container ``docker_name``; None if there is none."""
        try:
            data = await self._owned(docker_name, container_id)
        except ContainerNotFound:
            return None
        return reports.label(data, LABEL_TENANT)

    async def image_inspect(self, image: str) -> dict[str, Any] | None:
        """``GET /images/{name}/json``; None when the engine has no such image.

        Docker also takes an image ID or a prefix of one here: callers that resolve a
        tenant's image name check the answer's tags (``edgecloud_agent.isolation.images``)."""
        try:
            async with self._calling(f"inspect image {image}", self._timeout):
                data: dict[str, Any] = await self._client().images.inspect(image)
        except RuntimeFailure as err:
            if err.status == 404:
                return None
            raise
        return data

    async def info(self) -> dict[str, Any]:
        """``GET /info``: the engine's set-up (cgroup driver and version, ...)."""
        async with self._calling("info", self._timeout):
            data = await self._client().system.info()
        return dict(data)

    async def tag(self, image_id: str, *, repository: str, tag: str) -> None:
        async with self._calling(f"tag {image_id}", self._timeout):
            await self._client().images.tag(image_id, repository, tag=tag)

    async def untag(self, reference: str, *, prune: bool = False) -> None:
        """Remove one tag; the image goes with its last tag unless a container uses it
        (and, with ``prune``, its untagged parent layers too)."""
        try:
            async with (
                self._calling(f"untag {reference}", self._timeout),
                _response(
                    self._client(),
                    f"images/{reference}",
                    "DELETE",
                    params={"noprune": "0" if prune else "1"},
                ),
            ):
                pass
        except RuntimeFailure as err:
            if err.status not in (404, 409):
                raise

    async def pull(self, image: str, on_progress: PullCallback | None = None) -> None:
        """Pull ``image`` from its registry, reporting progress through ``on_progress``."""
        tracker = PullTracker(image, on_progress)
        try:
            async with self._calling(f"pull {image}", self._pull_timeout):
                async for line in self._client().images.pull(image, stream=True):
                    tracker.feed(line)
        except RuntimeFailure as err:
            # The engine being away is its own error; anything else is this pull's.
            if isinstance(err, RuntimeUnavailable) and not isinstance(err, RuntimeTimeout):
                raise
            tracker.finish("failed")
            raise ImagePullFailed(err.message) from err
        tracker.finish("done")

    async def create(self, spec: ContainerSpec, placement: Placement) -> ContainerReport:
        """Create (not start) a hardened container as the node placed it; converge on one
        we made before."""
        body = create_body(spec, self.policy, placement)
        try:
            async with self._calling(f"create {spec.docker_name}", self._timeout):
                created = await self._client().containers.create(body, name=spec.docker_name)
        except RuntimeFailure as err:
            if err.status != 409:
                raise
            # The name is taken: by this very container (a create that got this far before
            # a crash or a repeat) or by some other container, which we must not touch;
            # an old copy of this one (another placement) is not this container either.
            existing = await self._inspect_raw(spec.docker_name)
            if (
                existing is not None
                and reports.label(existing, LABEL_CONTAINER_ID) == spec.container_id
                and (reports.from_inspect(existing).generation or 1) == spec.generation
            ):
                return reports.from_inspect(existing)
            raise NameConflict(f"a container named {spec.docker_name} already exists") from err
        return ContainerReport(
            container_id=spec.container_id,
            docker_id=created.id,
            docker_name=spec.docker_name,
            image=spec.image,
            image_id=placement.image_id,
            state="created",
        )

    # Networks and volumes: the tenants' own networks and the containers' /app disks
    # (edgecloud_agent.isolation decides; these are the engine's calls).

    async def network(self, name: str) -> dict[str, Any] | None:
        """``GET /networks/{name}``; None when there is no such network."""
        try:
            async with self._calling(f"inspect network {name}", self._timeout):
                data: dict[str, Any] = await self._client()._query_json(f"networks/{name}")
        except RuntimeFailure as err:
            if err.status == 404:
                return None
            raise
        return data

    async def create_network(self, body: dict[str, Any]) -> None:
        async with self._calling(f"create network {body.get('Name')}", self._timeout):
            await self._client()._query_json("networks/create", "POST", data=body)

    async def remove_network(self, name: str) -> None:
        """Remove a network; one that is not there is not an error."""
        try:
            async with (
                self._calling(f"remove network {name}", self._timeout),
                _response(self._client(), f"networks/{name}", "DELETE"),
            ):
                pass
        except RuntimeFailure as err:
            if err.status != 404:
                raise

    async def subnets(self) -> list[ipaddress.IPv4Network]:
        """The IPv4 subnets of every network on the engine."""
        async with self._calling("list networks", self._timeout):
            listed = await self._client()._query_json("networks")
        found = []
        for network in listed:
            for config in (network.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, TypeError):
                    subnet = ipaddress.ip_network(config.get("Subnet"), strict=False)
                    if isinstance(subnet, ipaddress.IPv4Network):
                        found.append(subnet)
        return found

    async def containers_on_network(self, name: str) -> int:
        """How many containers, running or not, are attached to the network."""
        async with self._calling(f"list containers on {name}", self._timeout):
            listed = await self._client().containers.list(
                all=True, filters=json.dumps({"network": [name]})
            )
        return len(listed)

    async def inspect_networks(self, docker_name: str) -> set[str] | None:
        """The networks a container is attached to; None when there is no such container."""
        data = await self._inspect_raw(docker_name)
        if data is None:
            return None
        return set(((data.get("NetworkSettings") or {}).get("Networks") or {}).keys())

    async def connect(self, network: str, docker_name: str) -> None:
        async with self._calling(f"connect {docker_name} to {network}", self._timeout):
            await self._client()._query_json(
                f"networks/{network}/connect", "POST", data={"Container": docker_name}
            )

    async def disconnect(self, network: str, docker_name: str) -> None:
        async with self._calling(f"disconnect {docker_name} from {network}", self._timeout):
            await self._client()._query_json(
                f"networks/{network}/disconnect",
                "POST",
                data={"Container": docker_name, "Force": True},
            )

    async def images_of_tenant(self, tenant_id: str) -> set[str]:
        """The image IDs the tenant's containers on this node use."""
        async with self._calling("list containers of a tenant", self._timeout):
            listed = await self._client().containers.list(
                all=True, filters=json.dumps({"label": [f"{LABEL_TENANT}={tenant_id}"]})
            )
        return {str(container._container.get("ImageID", "")) for container in listed}

    async def gateway_of(self, network: str) -> str | None:
        """The node's own address on a network (its bridge's), e.g. Docker's ``bridge``."""
        data = await self.network(network) or {}
        for config in (data.get("IPAM") or {}).get("Config") or []:
            gateway = config.get("Gateway")
            if gateway and ":" not in gateway:
                return str(gateway)
        # Docker's default bridge names no gateway: it is the address of its interface.
        interface = (data.get("Options") or {}).get("com.docker.network.bridge.name")
        for address in psutil.net_if_addrs().get(str(interface), []):
            if address.family == socket.AF_INET:
                return str(address.address)
        return None

    async def create_volume(
        self, name: str, *, options: dict[str, str], labels: dict[str, str]
    ) -> None:
        """A named volume of the ``local`` driver (creating one that exists changes nothing)."""
        async with self._calling(f"create volume {name}", self._timeout):
            await self._client()._query_json(
                "volumes/create",
                "POST",
                data={"Name": name, "Driver": "local", "DriverOpts": options, "Labels": labels},
            )

    async def remove_volume(self, name: str) -> None:
        await self._remove_volume(name)

    async def start_created(self, report: ContainerReport) -> ContainerReport:
        """Start a container this node has just created (it is ours: no need to look it up)."""
        async with self._calling(f"start {report.docker_name}", self._timeout):
            await self._client().containers.container(report.docker_id).start()
        after = await self._inspect_raw(report.docker_id)
        if after is None:  # an auto-removed job may be gone already
            return report.model_copy(update={"state": reports.REMOVED})
        return reports.from_inspect(after)

    async def _after(self, data: dict[str, Any]) -> ContainerReport:
        """The container's state after an action; it may be gone already (auto-remove)."""
        docker_id = str(data["Id"])
        after = await self._inspect_raw(docker_id)
        if after is not None:
            return reports.from_inspect(after)
        gone = reports.from_inspect(data)
        return gone.model_copy(update={"state": reports.REMOVED})

    async def start(self, docker_name: str, *, container_id: str) -> ContainerReport:
        data = await self._owned(docker_name, container_id)
        async with self._calling(f"start {docker_name}", self._timeout):
            await self._client().containers.container(str(data["Id"])).start()
        return await self._after(data)

    async def stop(
        self, docker_name: str, *, container_id: str, timeout_s: float
    ) -> ContainerReport:
        """Stop with SIGTERM, then SIGKILL after ``timeout_s``."""
        data = await self._owned(docker_name, container_id)
        grace = max(0, round(timeout_s))
        async with self._calling(f"stop {docker_name}", grace + self._timeout):
            await self._client().containers.container(str(data["Id"])).stop(t=grace)
        return await self._after(data)

    async def restart(
        self, docker_name: str, *, container_id: str, timeout_s: float
    ) -> ContainerReport:
        data = await self._owned(docker_name, container_id)
        grace = max(0, round(timeout_s))
        async with self._calling(f"restart {docker_name}", grace + self._timeout):
            await self._client().containers.container(str(data["Id"])).restart(t=grace)
        return await self._after(data)

    async def remove(self, docker_name: str, *, container_id: str) -> None:
        """Remove (killing it if running); a container that is not there is not an error."""
        try:
            data = await self._owned(docker_name, container_id)
        except ContainerNotFound:
            return
        try:
            async with self._calling(f"remove {docker_name}", self._timeout):
                await self._client().containers.container(str(data["Id"])).delete(force=True)
        except RuntimeFailure as err:
            # 404: gone meanwhile; 409: Docker is already removing it.
            if err.status not in (404, 409):
                raise
        await self._remove_volume(app_volume(container_id))

    async def _remove_volume(self, name: str) -> None:
        try:
            async with (
                self._calling(f"remove volume {name}", self._timeout),
                _response(self._client(), f"volumes/{name}", "DELETE"),
            ):
                pass
        except RuntimeFailure as err:
            if err.status != 404:
                logger.warning("could not remove volume %s: %s", name, err.message)

    # Bytes in and out of containers: streamed, never whole in memory (aiodocker's own
    # get_archive and log helpers read everything first).

    async def put_archive(
        self, docker_name: str, *, container_id: str, path: str, tar: AsyncIterator[bytes]
    ) -> None:
        """Unpack the tar stream ``tar`` at ``path`` in the container (a volume path: the
        root filesystem is read-only)."""
        data = await self._owned(docker_name, container_id)
        async with (
            self._calling(f"copy into {docker_name}", self._transfer_timeout),
            _response(
                self._client(),
                f"containers/{data['Id']}/archive",
                "PUT",
                params={"path": path},
                data=tar,
                headers={"Content-Type": "application/x-tar"},
                timeout=None,
            ) as response,
        ):
            await response.read()

    async def copy_out(
        self,
        docker_name: str,
        *,
        container_id: str,
        path: str,
        destination: Path,
        max_bytes: int | None = None,
        room: Callable[[int], None] | None = None,
    ) -> int:
        """Write the tar of ``path`` in the container to ``destination``; its size.

        A tar growing past ``max_bytes`` is cut off (:class:`FilesTooLarge`); ``room`` is
        asked before each chunk is written and raises when the node's disk cannot take it."""
        data = await self._owned(docker_name, container_id)
        written = 0
        try:
            async with (
                self._calling(f"copy out of {docker_name}", self._transfer_timeout),
                _response(
                    self._client(),
                    f"containers/{data['Id']}/archive",
                    "GET",
                    params={"path": path},
                    timeout=None,
                ) as response,
            ):
                with destination.open("wb") as out:
                    async for chunk in response.content.iter_chunked(1 << 20):
                        if max_bytes is not None and written + len(chunk) > max_bytes:
                            raise FilesTooLarge(
                                f"{path} in {docker_name} is larger than this node copies out"
                                f" ({max_bytes} bytes)"
                            )
                        if room is not None:
                            room(len(chunk))
                        await asyncio.to_thread(out.write, chunk)
                        written += len(chunk)
        except RuntimeFailure as err:
            await asyncio.to_thread(destination.unlink, missing_ok=True)
            if err.status == 404:
                raise PathNotFound(f"{path} does not exist in {docker_name}") from err
            raise
        return written

    async def exec_detached(
        self, docker_name: str, *, container_id: str, argv: list[str], workdir: str
    ) -> str:
        """Start ``argv`` inside the container (as its own user, with its hardening) and
        return the exec id; it runs on without the agent."""
        data = await self._owned(docker_name, container_id)
        async with self._calling(f"exec in {docker_name}", self._timeout):
            created = await self._client()._query_json(
                f"containers/{data['Id']}/exec",
                "POST",
                data={
                    "Cmd": argv,
                    "WorkingDir": workdir,
                    "AttachStdout": False,
                    "AttachStderr": False,
                    "Privileged": False,
                },
            )
            exec_id = str(created["Id"])
            await self._client()._query_json(
                f"exec/{exec_id}/start", "POST", data={"Detach": True, "Tty": False}
            )
        return exec_id

    async def attach_exec(
        self,
        docker_name: str,
        *,
        container_id: str,
        argv: list[str],
        tty: bool,
        stdin: bool,
        size: tuple[int, int] | None = None,
    ) -> "ExecStream":
        """Start ``argv`` inside the container with its output (and input) attached.

        It runs as the container's own user with the container's hardening (no privilege,
        the container's capabilities, namespaces and cgroup), never on the node."""
        data = await self._owned(docker_name, container_id)
        what = f"exec in {docker_name}"
        async with self._calling(what, self._timeout):
            container = self._client().containers.container(data["Id"])
            execution = await container.exec(
                argv,
                stdin=stdin,
                tty=tty,
                privileged=False,
                environment={"TERM": "xterm-256color"} if tty else None,
            )
            stream = execution.start(detach=False)
            await stream.__aenter__()
        attached = ExecStream(self, execution, stream, what)
        if size is not None:
            try:
                await attached.resize(*size)
            except RuntimeFailure:
                await attached.finish(grace_s=0, whole_tree=True)
                raise
        return attached

    async def exec_exit_code(self, exec_id: str) -> int | None:
        """The exit code of a finished exec; None while it runs."""
        async with self._calling(f"inspect exec {exec_id}", self._timeout):
            found = await self._client()._query_json(f"exec/{exec_id}/json")
        if found.get("Running"):
            return None
        code = found.get("ExitCode")
        return int(code) if code is not None else -1

    async def logs(
        self, docker_name: str, *, container_id: str, tail: int, since: datetime | None
    ) -> tuple[list[LogLine], bool]:
        """The container's last ``tail`` lines (or those after ``since``), and whether it
        is still running."""
        data = await self._owned(docker_name, container_id)
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "timestamps": 1, "tail": str(tail)}
        if since is not None:
            params["since"] = f"{since.timestamp():.9f}"
        async with (
            self._calling(f"logs of {docker_name}", self._timeout),
            _response(self._client(), f"containers/{data['Id']}/logs", params=params) as response,
        ):
            raw = await response.read()
        running = bool(data.get("State", {}).get("Running"))
        return list(reports.log_lines(raw)), running

    async def follow_logs(
        self, docker_id: str, *, since: datetime
    ) -> AsyncGenerator[LogLine, None]:
        """The container's output lines from ``since`` on, as they come, until it stops
        (then the stream ends). A client of its own: this connection stays open."""
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": 1,
            "since": f"{since.timestamp():.9f}",
        }
        try:
            docker = aiodocker.Docker(url=self._url)
        except ValueError as err:
            raise RuntimeUnavailable(f"logs: {err}") from err
        try:
            async with _response(
                docker, f"containers/{docker_id}/logs", params=params, timeout=None
            ) as response:
                frames = reports.FrameReader()
                async for chunk in response.content.iter_any():
                    for stream, payload in frames.feed(chunk):
                        for line in reports.log_lines_of(stream, payload):
                            yield line
        except aiodocker.DockerError as err:
            raise RuntimeFailure(f"logs of {docker_id}: {err.message}", status=err.status) from err
        except (OSError, aiohttp.ClientError) as err:
            raise RuntimeUnavailable(f"logs of {docker_id}: {err}") from err
        finally:
            await docker.close()

    async def write_logs(self, docker_id: str, destination: Path) -> int:
        """All of a container's output, as text lines, to ``destination``; its size."""
        params = {"stdout": 1, "stderr": 1, "timestamps": 0}
        written = 0
        async with (
            self._calling(f"logs of {docker_id}", self._transfer_timeout),
            _response(
                self._client(), f"containers/{docker_id}/logs", params=params, timeout=None
            ) as response,
        ):
            frames = reports.FrameReader()
            with destination.open("wb") as out:
                async for chunk in response.content.iter_chunked(1 << 16):
                    for _, payload in frames.feed(chunk):
                        out.write(payload)
                        written += len(payload)
        return written

    async def volume_path(self, container_id: str) -> Path:
        """Where the container's application volume is on this node's filesystem."""
        name = app_volume(container_id)
        async with self._calling(f"inspect volume {name}", self._timeout):
            data = await self._client()._query_json(f"volumes/{name}")
        return Path(data["Mountpoint"])

    async def save_image(self, image: str, destination: Path) -> int:
        """Write ``docker save`` of ``image`` to ``destination``; its size."""
        written = 0
        async with (
            self._calling(f"save {image}", self._transfer_timeout),
            _response(
                self._client(), "images/get", "GET", params={"names": image}, timeout=None
            ) as response,
        ):
            with destination.open("wb") as out:
                async for chunk in response.content.iter_chunked(1 << 20):
                    out.write(chunk)
                    written += len(chunk)
        return written

    async def build_image(
        self, context: AsyncIterator[bytes], *, params: dict[str, str], what: str
    ) -> str:
        """Build from a build context tar stream with the engine's ``/build`` parameters
        (``edgecloud_agent.isolation.images`` sets them); the new image's ID. No tag: the
        caller tags it where it belongs."""
        try:
            async with (
                self._calling(f"build {what}", self._pull_timeout),
                _response(
                    self._client(),
                    "build",
                    "POST",
                    params=params,
                    data=context,
                    headers={"Content-Type": "application/x-tar"},
                    timeout=None,
                ) as response,
            ):
                answer = await response.read()
        except RuntimeFailure as err:
            raise ImageBuildFailed(err.message) from err
        # Like a load: 200, with any failure in the body's JSON lines.
        image_id = None
        for line in answer.splitlines():
            if b'"error"' in line or b'"errorDetail"' in line:
                detail = line.decode(errors="replace")[:300]
                raise ImageBuildFailed(f"build {what}: {detail}")
            if line.startswith(b'{"aux"'):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    image_id = str(json.loads(line)["aux"]["ID"])
        if image_id is None:
            raise ImageBuildFailed(f"build {what}: the engine named no image")
        return image_id

    async def load_image(self, archive: AsyncIterator[bytes], *, what: str) -> None:
        """Load a ``docker save`` archive stream into the engine."""
        try:
            async with (
                self._calling(f"load {what}", self._transfer_timeout),
                _response(
                    self._client(),
                    "images/load",
                    "POST",
                    data=archive,
                    headers={"Content-Type": "application/x-tar"},
                    params={"quiet": "1"},
                    timeout=None,
                ) as response,
            ):
                answer = await response.read()
        except RuntimeFailure as err:
            raise ImageLoadFailed(err.message) from err
        # The engine answers 200 and puts a refusal in the body's JSON lines.
        for line in answer.splitlines():
            if b'"error"' in line or b'"errorDetail"' in line:
                raise ImageLoadFailed(f"load {what}: {line.decode(errors='replace')[:300]}")

    async def container_events(self) -> AsyncGenerator[ContainerReport, None]:
        """State changes of our containers as they happen; runs until cancelled.

        The stream ends when the daemon restarts: resubscribe, asking for the events
        since the last one seen so that none in between are missed.
        """
        delay, since = 0.5, None
        while True:
            try:
                async with aclosing(self._events(since)) as events:
                    async for event in events:
                        since = reports.after_ns(int(event.get("timeNano", 0)))
                        report = await self._event_report(event)
                        if report is not None:
                            yield report
                        delay = 0.5
            except RuntimeFailure as err:
                logger.debug("Docker events unavailable: %s", err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESUBSCRIBE_MAX_S)

    async def _event_report(self, event: dict[str, Any]) -> ContainerReport | None:
        actor = event.get("Actor") or {}
        docker_id = str(actor.get("ID", ""))
        if event.get("Action") == "destroy":
            return reports.removed(docker_id, actor.get("Attributes") or {})
        try:
            data = await self._inspect_raw(docker_id)
        except RuntimeFailure as err:
            logger.debug("cannot inspect %s after an event: %s", docker_id, err)
            return None
        # None: removed already; its destroy event follows.
        return reports.from_inspect(data) if data is not None else None

    async def _events(self, since: str | None) -> AsyncGenerator[dict[str, Any], None]:
        """One subscription to the daemon's events for our containers."""
        filters = {"type": ["container"], "label": [f"{LABEL_MANAGED}=true"], "event": _EVENTS}
        params: dict[str, Any] = {"filters": json.dumps(filters)}  # must be a JSON string
        if since is not None:
            params["since"] = since
        # A client of its own: a failing command call closes the shared one.
        try:
            docker = aiodocker.Docker(url=self._url)
        except ValueError as err:  # no engine address at all
            raise RuntimeUnavailable(f"events: {err}") from err
        try:
            # aiodocker's events channel is untyped; each item is one event's JSON object.
            subscriber = docker.events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
            pump = asyncio.create_task(docker.events.run(**params), name="docker-events")
            try:
                while (event := await subscriber.get()) is not None:
                    yield event
                await asyncio.wait({pump}, timeout=self._timeout)
                if pump.done() and not pump.cancelled() and pump.exception() is not None:
                    raise RuntimeUnavailable(f"events: {pump.exception()}")
            finally:
                if not pump.done():
                    pump.cancel()
                    await asyncio.wait({pump})
        finally:
            await docker.close()


@asynccontextmanager
async def _response(
    docker: aiodocker.Docker, path: str, method: str = "GET", **options: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """One Engine API response, closed on the way out whatever happened.

    aiodocker's ``_query`` leaves the response to its caller. A stream left half-read (a
    cancelled log follower, a copy that timed out) would keep its connection until the
    garbage collector found it, after the client was closed: aiohttp's "Unclosed
    connection". Closing a response read to its end is a no-op: its connection is back in
    the pool already."""
    async with docker._query(path, method, **options) as response:
        try:
            yield response
        finally:
            response.close()


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A file's bytes, 1 MiB at a time, read off the event loop."""
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, 1 << 20):
            yield chunk


class ExecStream:
    """A process inside a container with its output, and input when asked, attached.

    Output not read stays in Docker's socket (aiodocker reads at most 64 KiB ahead), so a
    slow reader holds the process back instead of growing a buffer."""

    def __init__(
        self,
        runtime: DockerRuntime,
        execution: aiodocker.execs.Exec,
        stream: aiodocker.stream.Stream,
        what: str,
    ) -> None:
        self._runtime = runtime
        self._execution = execution
        self._stream = stream
        self._what = what

    async def read(self) -> bytes | None:
        """The next output (stdout and stderr as they come); None once it has ended."""
        try:
            message = await self._stream.read_out()
        except (aiohttp.ClientError, OSError) as err:
            logger.debug("%s: output ended: %s", self._what, err)
            return None
        return None if message is None else message.data

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.write_in(data)
        except (RuntimeError, aiohttp.ClientError, OSError) as err:
            raise RuntimeFailure(f"{self._what}: input closed: {err}") from err

    async def resize(self, cols: int, rows: int) -> None:
        async with self._runtime._calling(f"resize {self._what}", self._runtime._timeout):
            await self._execution.resize(w=cols, h=rows)

    async def state(self) -> tuple[bool, int | None, int]:
        """(running, exit code, the process's id on the node)."""
        async with self._runtime._calling(f"inspect {self._what}", self._runtime._timeout):
            found = await self._execution.inspect()
        code = found.get("ExitCode")
        return bool(found.get("Running")), code, int(found.get("Pid") or 0)

    async def close(self) -> None:
        """Close input and output: a terminal's shell gets its hangup, a reader its end of
        input."""
        try:
            await self._stream.close()
        except (aiohttp.ClientError, OSError) as err:
            logger.debug("%s: closing: %s", self._what, err)

    async def finish(self, grace_s: float = 2.0, *, whole_tree: bool = False) -> int | None:
        """End it: close the streams, give the process ``grace_s`` to exit, then kill it
        (Docker has no call to stop an exec). With ``whole_tree``, also every process it
        started that is still there (a shell's jobs, which a closed terminal does not
        always stop). Returns its exit code, None if unknown."""
        tree: list[tuple[int, str]] = []
        try:
            running, code, pid = await self.state()
            if running and whole_tree and pid > 0:
                tree = process_tree(pid)
        except RuntimeFailure as err:
            await self.close()
            logger.warning("%s: cannot make sure it ended: %s", self._what, err)
            return None
        await self.close()
        try:
            deadline = asyncio.get_running_loop().time() + grace_s
            while running and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
                running, code, pid = await self.state()
            if running and pid > 0 and not tree:
                tree = process_tree(pid)
        except RuntimeFailure as err:
            logger.warning("%s: cannot make sure it ended: %s", self._what, err)
            running = True  # not known to have ended: no exit code to tell
        killed = kill_same_processes(tree)
        if killed:
            logger.info("%s: killed %d process(es) left after its end", self._what, killed)
        return None if running else code


def process_tree(root: int) -> list[tuple[int, str]]:
    """``root`` and its descendants on the node, each with its start time, so that a pid
    reused meanwhile is never taken for it."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _parent_and_start(int(entry.name))):
            children.setdefault(found[0], []).append(int(entry.name))
            started[int(entry.name)] = found[1]
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in started:
            tree.append((pid, started[pid]))
            todo.extend(children.get(pid, []))
    return tree


def kill_same_processes(processes: list[tuple[int, str]]) -> int:
    """SIGKILL each (pid, start time) still alive as the same process; how many were."""
    killed = 0
    for pid, started in processes:
        found = _parent_and_start(pid)
        if found is None or found[1] != started:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except OSError:
            continue
    return killed


def _parent_and_start(pid: int) -> tuple[int, str] | None:
    """A process's parent and start time from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: fields follow the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19]
