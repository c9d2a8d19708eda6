"""The node's health inputs, from which the monitor predicts a failure; and the drain flag.

TemperatureSensor   the hottest sensor in degrees Celsius: a file (a kernel thermal zone,
                    millidegrees) when configured, else psutil's sensors; None when unknown
HealthProbe         an operator's command (argv, never through a shell): exit 0 is healthy;
                    a non-zero exit or a timeout is a failure
DiskErrorCounter    a file holding a cumulative I/O error counter, in hex (``0x1f``, as
                    ``/sys/block/<dev>/device/ioerr_cnt`` of SCSI/SATA disks holds it) or
                    decimal. psutil counts no errors and the kernel log is out of scope.
DrainFlag           a file (``<state_dir>/drain``) whose presence means an operator drains
                    the node: ``touch`` sets it, ``rm`` clears it

An input that cannot be read is logged once (and once more when it works again) and
yields None: an unreadable input is not a sick node.
"""

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)


class _Trouble:
    """A broken input logged once when it breaks and once when it works again."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._broken = False

    def broken(self, error: object) -> None:
        if not self._broken:
            logger.warning("cannot read %s: %s", self._what, error)
        self._broken = True

    def fine(self) -> None:
        if self._broken:
            logger.info("%s can be read again", self._what)
        self._broken = False


class TemperatureSensor:
    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._trouble = _Trouble(f"the temperature in {path}" if path else "the temperature")

    def read(self) -> float | None:
        """The hottest reading in degrees Celsius; None where the node has no sensor."""
        try:
            if self._path is not None:
                celsius: float | None = int(self._path.read_text().strip()) / 1000
            else:
                celsius = self._hottest_sensor()
        except (OSError, ValueError) as err:
            self._trouble.broken(err)
            return None
        self._trouble.fine()
        return celsius

    @staticmethod
    def _hottest_sensor() -> float | None:
        # Only Linux and FreeBSD have sensors_temperatures; many boards report none at all.
        read = getattr(psutil, "sensors_temperatures", None)
        if read is None:
            return None
        readings = [entry.current for entries in read().values() for entry in entries]
        return max(readings, default=None)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    """``exit status 1`` or ``no answer in 10 s``."""


class HealthProbe:
    """Runs an operator's health command with a deadline."""

    def __init__(self, argv: Sequence[str], *, timeout_s: float) -> None:
        if not argv:
            raise ValueError("the health probe must have a command")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s}")
        self.argv = list(argv)
        self._timeout_s = timeout_s
        self._trouble = _Trouble(f"the health probe {self.argv[0]!r}")

    async def run(self) -> ProbeResult | None:
        """The probe's verdict; None when it cannot be started (a configuration error, not
        a sign of failure)."""
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                # Its own process group: a timed-out script is killed with its children.
                start_new_session=True,
            )
        except OSError as err:
            self._trouble.broken(err)
            return None
        self._trouble.fine()
        try:
            code = await asyncio.wait_for(process.wait(), self._timeout_s)
        except TimeoutError:
            return ProbeResult(ok=False, detail=f"no answer in {self._timeout_s:g} s")
        finally:
            if process.returncode is None:  # timed out, or the agent is stopping
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        return ProbeResult(ok=code == 0, detail=f"exit status {code}")


class DiskErrorCounter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._trouble = _Trouble(f"the disk error counter {path}")

    def read(self) -> int | None:
        try:
            text = self.path.read_text().strip()
            count = int(text, 16) if text.lower().startswith("0x") else int(text)
        except (OSError, ValueError) as err:
            self._trouble.broken(err)
            return None
        self._trouble.fine()
        return count


class DrainFlag:
    def __init__(self, path: Path) -> None:
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()
