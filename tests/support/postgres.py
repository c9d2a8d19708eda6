"""A PostgreSQL server of a test's own, for faults that must not touch the machine's server
(other stacks of the same run use it): made with initdb in a temporary directory, started,
restarted and stopped with pg_ctl, as the ``postgres`` user (initdb refuses root)."""

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .processes import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str, timeout: float = 60) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        check=True,
        capture_output=True,
        timeout=timeout,
    )


@dataclass
class PrivatePostgres:
    port: int = field(default_factory=free_port)
    directory: Path = field(init=False)
    """Under /tmp, not a test's own temporary directory: ``postgres`` may not enter that."""

    def start(self) -> "PrivatePostgres":
        self.directory = Path(tempfile.mkdtemp(prefix="edgecloud-pg-"))
        shutil.chown(self.directory, "postgres", "postgres")
        data = self.directory / "data"
        _as_postgres(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        self._pg_ctl("start", "-w")
        return self

    def restart(self) -> None:
        """As an operator's restart does: fast shutdown (every connection dropped), start."""
        self._pg_ctl("restart", "-m", "fast", "-w")

    def stop(self) -> None:
        try:
            self._pg_ctl("stop", "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _pg_ctl(self, *argv: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        _as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            options,
            *argv,
        )
