"""Starting and stopping the real processes of the stack in tests."""

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
ROUTER_PYTHON = ROOT / ".venv-router" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout}s waiting for {what or check}")


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 10) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def wait_healthy(
    url: str, process: ManagedProcess, timeout: float = 60, *, verify: ssl.SSLContext | bool = True
) -> None:
    """``verify``: a CA file for an https:// URL with a certificate of the test's own."""

    def healthy() -> bool:
        if not process.running():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2, verify=verify).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout=timeout, interval=0.2, what=f"{process.name} to be healthy")
    except TimeoutError as err:
        raise TimeoutError(f"{err}\n{process.log_tail()}") from err


def wait_port(port: int, process: ManagedProcess, timeout: float = 30) -> None:
    def listening() -> bool:
        if not process.running():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout=timeout, interval=0.1, what=f"{process.name} on port {port}")


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its children (a router's workers, say), in
    bytes; 0 once it is gone."""
    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total
