"""A Docker engine of our own that we restart: the agent outlives it.

The shared engine must not be restarted under other tests, so this starts a private
dockerd (own socket, data root, exec root and pid file) with Docker's defaults, in a network
namespace of its own (so its docker0 and iptables are not the shared engine's), and loads
the test image into it.
"""

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.runtime.errors import RuntimeUnavailable
from edgecloud_agent.runtime.hardening import ContainerPolicy, Placement, app_volume
from edgecloud_contracts.containers import ContainerReport, ContainerSpec

from .conftest import IMAGE, make_spec

pytestmark = pytest.mark.stack


class PrivateEngine:
    def __init__(self) -> None:
        # Short paths: containerd's sockets live under the exec root (108-byte limit).
        self.root = Path(tempfile.mkdtemp(prefix="ecd-"))
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.netns = f"ecd-{self.root.name.removeprefix('ecd-')}"
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.url, *args], capture_output=True, text=True, timeout=60
        )

    def start(self) -> None:
        if not Path(f"/var/run/netns/{self.netns}").exists():
            subprocess.run(["ip", "netns", "add", self.netns], check=True, timeout=30)
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            [
                # nsenter, not `ip netns exec` (which remounts /sys: no cgroups for dockerd).
                "nsenter",
                f"--net=/var/run/netns/{self.netns}",
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "-H",
                self.url,
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 30
        while self.cli("info").returncode != 0:
            assert self.process.poll() is None, (self.root / "dockerd.log").read_text()
            assert time.monotonic() < deadline, "private dockerd did not come up"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def remove(self) -> None:
        self.stop()
        subprocess.run(["ip", "netns", "delete", self.netns], check=False, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine() -> Iterator[PrivateEngine]:
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is needed: run 'make setup'")
    private = PrivateEngine()
    try:
        private.start()
        saved = subprocess.run(["docker", "save", IMAGE], capture_output=True, timeout=60)
        loaded = subprocess.run(
            ["docker", "-H", private.url, "load"],
            input=saved.stdout,
            capture_output=True,
            timeout=60,
        )
        assert loaded.returncode == 0, loaded.stderr
        yield private
    finally:
        private.remove()


@contextlib.asynccontextmanager
async def collecting(runtime: DockerRuntime) -> AsyncIterator[list[ContainerReport]]:
    seen: list[ContainerReport] = []

    async def collect() -> None:
        async with contextlib.aclosing(runtime.container_events()) as events:
            async for report in events:
                seen.append(report)

    task = asyncio.create_task(collect())
    try:
        await asyncio.sleep(0.5)
        yield seen
    finally:
        task.cancel()
        await asyncio.wait({task})


async def until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110  # polling a list another task fills
            await asyncio.sleep(0.05)


def placed(runtime_image: str, spec: ContainerSpec) -> Placement:
    """The engine alone (the node's isolation has its own tests): no network, a plain volume."""
    return Placement(image_id=runtime_image, network="none", volume=app_volume(spec.container_id))


async def test_events_resume_after_the_engine_restarts(engine: PrivateEngine) -> None:
    async with (
        DockerRuntime(url=engine.url, timeout_s=5, policy=ContainerPolicy()) as runtime,
        collecting(runtime) as seen,
    ):
        found = await runtime.image_inspect(IMAGE)
        assert found is not None
        image_id = str(found["Id"])
        before = make_spec("t-before")
        await runtime.create(before, placed(image_id, before))
        await runtime.start(before.docker_name, container_id=before.container_id)
        await until(lambda: any(r.container_id == before.container_id for r in seen), 10)

        engine.stop()
        with pytest.raises(RuntimeUnavailable):
            await runtime.inspect(before.docker_name)
        with pytest.raises(RuntimeUnavailable):
            await runtime.list_containers()
        engine.start()

        after = make_spec("t-after", restart_policy="no")
        await runtime.create(after, placed(image_id, after))
        await runtime.start(after.docker_name, container_id=after.container_id)
        await until(
            lambda: any(
                r.container_id == after.container_id and r.state == "running" for r in seen
            ),
            20,
        )
        # The container from before came back by its restart policy (unless-stopped).
        back = await runtime.inspect(before.docker_name)
        assert back is not None
        assert back.state == "running"
        for spec in (before, after):
            await runtime.remove(spec.docker_name, container_id=spec.container_id)
