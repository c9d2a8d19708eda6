"""Deployments on the node: download the application archive and its script, check and
extract the archive into a fresh directory, copy it into the container's application
volume, run the script inside the container, and report every step.

The deploy command only hands the order over (it is answered at once); the work runs in
its own task and is reported as it goes. Its state is written to disk at each step, so
an agent restarted midway goes on: downloads resume from their partial files, and a
script already started is waited for (it runs in the container, not in the agent). The
end of a deployment is kept on disk until the cloud has it.
"""

import asyncio
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgecloud_contracts.archives import (
    ArchiveLimits,
    ArchiveUnsafe,
    extract_archive,
    pack_directory,
)
from edgecloud_contracts.artifacts import (
    DeploymentOrder,
    DeploymentReport,
    DeploymentState,
    DeploymentStep,
)

from ..isolation.node_paths import child, component
from ..runtime.docker import DockerRuntime
from ..runtime.errors import RuntimeFailure
from ..runtime.hardening import APP_DIR
from .transfers import CloudFiles, DownloadFailed, DownloadProgress

logger = logging.getLogger(__name__)

# Where the script goes inside the application volume, beside the application's files.
SCRIPT_DIR = ".edgecloud"
# The script's output joins the container's own (its logs): the main process's stdout.
RUN = 'cd "$1" && exec sh "$2" >/proc/1/fd/1 2>/proc/1/fd/2'
_EXIT_POLL_S = 0.5
_PROGRESS_EVERY_S = 1.0


class DeploymentFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Deployments:
    def __init__(
        self,
        *,
        runtime: DockerRuntime,
        files: CloudFiles,
        report: Callable[[DeploymentReport], None],
        deliver: Callable[[DeploymentReport], Awaitable[None]],
        state_dir: Path,
        limits: ArchiveLimits | None = None,
    ) -> None:
        self._runtime = runtime
        self._files = files
        self._report = report
        self._deliver = deliver
        self._root = state_dir / "deployments"
        self._limits = limits or ArchiveLimits()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def accept(self, order: DeploymentOrder) -> None:
        """Take a deployment on (once: a repeated order for it changes nothing)."""
        if order.deployment_id in self._tasks:
            return
        work = self._work(order.deployment_id)
        component(order.script.name)  # its file name under the application
        if not (work / "order.json").exists():
            work.mkdir(parents=True, exist_ok=True)
            _write_json(work / "order.json", order.model_dump(mode="json"))
        self._start(order)

    def resume_unfinished(self) -> None:
        """After a restart: go on with every deployment that did not end."""
        if not self._root.exists():
            return
        for work in sorted(self._root.iterdir()):
            try:
                order = DeploymentOrder.model_validate_json((work / "order.json").read_text())
            except (OSError, ValueError) as err:
                logger.warning("dropping unreadable deployment state %s: %s", work.name, err)
                shutil.rmtree(work, ignore_errors=True)
                continue
            logger.info("resuming deployment %s", order.deployment_id)
            self._start(order)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, order: DeploymentOrder) -> None:
        task = asyncio.create_task(self._run(order), name=f"deployment {order.deployment_id}")
        self._tasks[order.deployment_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(order.deployment_id, None))

    def _work(self, deployment_id: str) -> Path:
        return child(self._root, deployment_id)

    async def _run(self, order: DeploymentOrder) -> None:
        work = self._work(order.deployment_id)
        progress = _load_progress(work)
        final = progress.get("final")
        if final is None:
            report = await self._carry_out(order, work, progress)
            # Written before it is sent: an agent restarted now sends it again, never
            # runs the deployment twice.
            _write_json(work / "progress.json", {**progress, "final": report.model_dump_json()})
        else:
            report = DeploymentReport.model_validate_json(final)
        # The end of a deployment must reach the cloud, however long the link is down.
        await self._deliver(report)
        shutil.rmtree(work, ignore_errors=True)

    async def _carry_out(
        self, order: DeploymentOrder, work: Path, progress: dict[str, str]
    ) -> DeploymentReport:
        try:
            exec_id = progress.get("exec_id")
            if exec_id is None:
                exec_id = await self._prepare_and_start(order, work)
                progress = _load_progress(work)
            exit_code = await self._wait_for_exit(exec_id)
        except DeploymentFailed as err:
            return self._final(order, DeploymentState.FAILED, error_code=err.code, error=str(err))
        except asyncio.CancelledError:
            raise  # the agent is stopping: the state on disk lets the next run go on
        except Exception as err:  # never leave a deployment hanging without a word
            logger.exception("deployment %s failed", order.deployment_id)
            return self._final(
                order, DeploymentState.FAILED, error_code="agent_error", error=str(err)
            )
        return self._final(
            order,
            DeploymentState.SUCCEEDED if exit_code == 0 else DeploymentState.FAILED,
            step=_run_step(progress, exit_code),
            exit_code=exit_code,
            error_code=None if exit_code == 0 else "script_failed",
            error=None if exit_code == 0 else f"the script exited with {exit_code}",
        )

    async def _prepare_and_start(self, order: DeploymentOrder, work: Path) -> str:
        total = order.archive.size + order.script.size
        async with self._step(order, DeploymentState.DOWNLOADING, "download") as detail:
            archive = await self._download(order, work, total)
            script = await self._files.download(
                order.script.url,
                work / "script",
                sha256=order.script.sha256,
                size=order.script.size,
            )
            detail.append(f"{total} bytes, SHA-256 checked")
        tree = work / "tree"
        async with self._step(order, DeploymentState.EXTRACTING, "extract") as detail:
            # A fresh directory each time: nothing of an earlier try is trusted.
            shutil.rmtree(tree, ignore_errors=True)
            try:
                summary = await asyncio.to_thread(extract_archive, archive, tree, self._limits)
            except ArchiveUnsafe as err:
                raise DeploymentFailed("archive_unsafe", str(err)) from err
            (tree / SCRIPT_DIR).mkdir(exist_ok=True)
            shutil.copyfile(script, child(tree / SCRIPT_DIR, order.script.name))
            detail.append(f"{summary.files} files, {summary.total_bytes} bytes")
        async with self._step(order, DeploymentState.COPYING, "copy") as detail:
            await self._runtime.put_archive(
                order.docker_name,
                container_id=order.container_id,
                path=APP_DIR,
                tar=_in_thread(pack_directory(tree)),
            )
            detail.append(f"into {APP_DIR}")
        run_started = datetime.now(UTC)
        self._send(
            order,
            DeploymentState.RUNNING,
            step=DeploymentStep(name="run", started_at=run_started, detail="started"),
        )
        try:
            exec_id = await self._runtime.exec_detached(
                order.docker_name,
                container_id=order.container_id,
                argv=[
                    "sh",
                    "-c",
                    RUN,
                    "edgecloud-deploy",
                    APP_DIR,
                    f"{SCRIPT_DIR}/{order.script.name}",
                ],
                workdir=APP_DIR,
            )
        except RuntimeFailure as err:
            code = "container_not_running" if err.status == 409 else err.code
            raise DeploymentFailed(code, err.message) from err
        _write_json(
            work / "progress.json", {"exec_id": exec_id, "run_started_at": run_started.isoformat()}
        )
        shutil.rmtree(tree, ignore_errors=True)
        return exec_id

    async def _download(self, order: DeploymentOrder, work: Path, total: int) -> Path:
        last = 0.0

        def progress(done: DownloadProgress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= _PROGRESS_EVERY_S or done.received == done.total:
                last = now
                self._send(order, DeploymentState.DOWNLOADING, received=done.received, total=total)

        try:
            return await self._files.download(
                order.archive.url,
                work / "archive",
                sha256=order.archive.sha256,
                size=order.archive.size,
                progress=progress,
            )
        except DownloadFailed as err:
            raise DeploymentFailed(err.code, str(err)) from err

    async def _wait_for_exit(self, exec_id: str) -> int:
        while True:
            try:
                code = await self._runtime.exec_exit_code(exec_id)
            except RuntimeFailure as err:
                if err.status == 404:  # the container went away with its exec
                    raise DeploymentFailed("container_gone", err.message) from err
                raise
            if code is not None:
                return code
            await asyncio.sleep(_EXIT_POLL_S)

    def _step(self, order: DeploymentOrder, state: DeploymentState, name: str) -> "_Step":
        return _Step(self, order, state, name)

    def _send(self, order: DeploymentOrder, state: DeploymentState, **fields: Any) -> None:
        """Progress: best effort (a lost step is followed by a later one)."""
        self._report(self._final(order, state, **fields))

    @staticmethod
    def _final(
        order: DeploymentOrder,
        state: DeploymentState,
        *,
        step: DeploymentStep | None = None,
        received: int | None = None,
        total: int | None = None,
        exit_code: int | None = None,
        error_code: str | None = None,
        error: str | None = None,
    ) -> DeploymentReport:
        return DeploymentReport(
            deployment_id=order.deployment_id,
            state=state,
            step=step,
            received=received,
            total=total,
            exit_code=exit_code,
            error_code=error_code,
            error=error[:2000] if error else None,
        )


class _Step:
    """Report a step's start, and its duration (and detail) when it ends well."""

    def __init__(
        self, owner: Deployments, order: DeploymentOrder, state: DeploymentState, name: str
    ) -> None:
        self._owner, self._order, self._state, self._name = owner, order, state, name
        self._detail: list[str] = []

    async def __aenter__(self) -> list[str]:
        self._started = datetime.now(UTC)
        self._clock = time.monotonic()
        self._owner._send(
            self._order,
            self._state,
            step=DeploymentStep(name=self._name, started_at=self._started),
        )
        return self._detail

    async def __aexit__(self, kind: object, error: BaseException | None, _: object) -> None:
        if error is not None:
            if isinstance(error, RuntimeFailure):
                raise DeploymentFailed(error.code, f"{self._name}: {error.message}") from error
            if isinstance(error, DownloadFailed):
                raise DeploymentFailed(error.code, f"{self._name}: {error}") from error
            return
        self._owner._send(
            self._order,
            self._state,
            step=DeploymentStep(
                name=self._name,
                started_at=self._started,
                duration_ms=round((time.monotonic() - self._clock) * 1000, 1),
                detail="; ".join(self._detail) or None,
            ),
        )


def _run_step(progress: dict[str, str], exit_code: int) -> DeploymentStep | None:
    started = progress.get("run_started_at")
    if started is None:
        return None
    began = datetime.fromisoformat(started)
    return DeploymentStep(
        name="run",
        started_at=began,
        duration_ms=round((datetime.now(UTC) - began).total_seconds() * 1000, 1),
        detail=f"exit code {exit_code}",
    )


async def _in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking generator (reading files) driven from a thread, chunk by chunk."""
    end = object()
    while (chunk := await asyncio.to_thread(next, chunks, end)) is not end:
        assert isinstance(chunk, bytes)
        yield chunk


def _write_json(path: Path, value: object) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    temporary.replace(path)


def _load_progress(work: Path) -> dict[str, str]:
    try:
        loaded: dict[str, str] = json.loads((work / "progress.json").read_text())
        return loaded
    except (OSError, ValueError):
        return {}
