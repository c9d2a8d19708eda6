"""A fleet of simulated agents spread over a few processes (tests/support/fleet.py), and
everything a test or benchmark needs to drive it: enrolment tokens issued through the
public API, start and stop, and the statistics the processes print, added up.

Each process is ``python -m tests.support.fleet_processes SPEC`` (the end of this module):
it runs its share of the fleet and prints a JSON line of statistics every second, with
the latency samples taken since the last line; SIGTERM makes its nodes leave cleanly.
"""

import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .fleet import Fleet, FleetSettings, Member, SimIdentity
from .processes import PYTHON, ROOT

STATS_INTERVAL_S = 1.0
_COUNTERS = (
    "agents",
    "connected",
    "beaten",
    "joins",
    "refused_count",
    "crashed",
    "beats_sent",
    "beats_acked",
    "beats_failed",
    "reports_sent",
    "reports_pending",
    "engine_calls",
)


async def enrolment_tokens(
    api: httpx.AsyncClient, count: int, *, concurrency: int = 16, note: str = "fleet"
) -> list[str]:
    """``count`` one-time enrolment tokens, asked of the public API as an operator does
    (``api`` is signed in as one); there is no bulk path, so ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> str:
        async with gate:
            answer = await api.post("/api/v1/devices/enrolments", json={"note": note})
        if answer.status_code != 201:
            raise RuntimeError(f"enrolment refused: {answer.status_code} {answer.text}")
        return str(answer.json()["token"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def enrol(
    api: httpx.AsyncClient, identities: Sequence[SimIdentity], enrolled: set[str]
) -> list[Member]:
    """Members for ``identities``: a token for each one not in ``enrolled`` (keys)."""
    new = [identity for identity in identities if identity.key not in enrolled]
    tokens = iter(await enrolment_tokens(api, len(new)))
    return [
        Member(identity, None if identity.key in enrolled else next(tokens))
        for identity in identities
    ]


@dataclass
class _Process:
    number: int
    process: asyncio.subprocess.Process
    reader: "asyncio.Task[None] | None" = None
    latest: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every statistics line but its samples (kept apart, with their time)."""
    final: bool = False


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    ms: float


class FleetProcesses:
    """The members of a fleet split over ``processes`` processes.

    ``async with FleetProcesses(...) as fleet:`` starts them; leaving stops them (each
    agent leaves the realm cleanly). Their statistics lines are read as they come.
    """

    def __init__(
        self,
        settings: FleetSettings,
        members: Sequence[Member],
        *,
        processes: int,
        workdir: Path,
    ) -> None:
        self.settings = settings
        self.members = list(members)
        self._count = max(1, min(processes, len(self.members)))
        self._workdir = workdir
        self._processes: list[_Process] = []
        self.beat_ms: list[Sample] = []
        self.beat_lag_ms: list[Sample] = []

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def pids(self) -> list[int]:
        return [running.process.pid for running in self._processes]

    async def __aenter__(self) -> "FleetProcesses":
        self._workdir.mkdir(parents=True, exist_ok=True)
        try:
            for number in range(self._count):
                share = self.members[number :: self._count]
                spec = self._workdir / f"fleet-{number}.json"
                spec.write_text(spec_json(self.settings, share, STATS_INTERVAL_S))
                spec.chmod(0o600)  # private keys and tokens
                log = (self._workdir / f"fleet-{number}.log").open("ab")
                process = await asyncio.create_subprocess_exec(
                    str(PYTHON),
                    "-m",
                    "tests.support.fleet_processes",
                    str(spec),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    stdin=asyncio.subprocess.DEVNULL,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    limit=1 << 24,
                )
                log.close()
                running = _Process(number, process)
                running.reader = asyncio.create_task(
                    self._read(running), name=f"fleet-{number} stats"
                )
                self._processes.append(running)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _read(self, running: _Process) -> None:
        stream = running.process.stdout
        assert stream is not None
        while line := await stream.readline():
            try:
                stats = json.loads(line)
            except ValueError:
                continue
            at = float(stats["t"])
            self.beat_ms.extend(Sample(at, ms) for ms in stats.pop("beat_ms"))
            self.beat_lag_ms.extend(Sample(at, ms) for ms in stats.pop("beat_lag_ms"))
            running.latest = stats
            running.history.append(stats)
            running.final = bool(stats.get("final"))

    def totals(self) -> dict[str, Any]:
        """The latest statistics of every process, added up (``min_sessions``: the least)."""
        total: dict[str, Any] = dict.fromkeys(_COUNTERS, 0)
        total["min_sessions"] = 0 if len(self._processes) < self._count else math.inf
        refused: list[str] = []
        total["loop_lag_ms"] = 0.0
        for running in self._processes:
            latest = running.latest
            if not latest:
                total["min_sessions"] = 0
                continue
            for name in _COUNTERS:
                total[name] += latest[name]
            total["min_sessions"] = min(total["min_sessions"], latest["min_sessions"])
            total["loop_lag_ms"] = max(total["loop_lag_ms"], latest["loop_lag_ms"])
            refused += latest["refused"]
        total["refused"] = refused
        if total["min_sessions"] is math.inf:
            total["min_sessions"] = 0
        return total

    def counter_at(self, name: str, at: float) -> int:
        """A counter summed over the processes as of their last lines before ``at``."""
        total = 0
        for running in self._processes:
            before = [line for line in running.history if line["t"] <= at]
            total += before[-1][name] if before else 0
        return total

    def exited(self) -> list[str]:
        """Processes that ended while they should run, with the end of their log."""
        ended = []
        for running in self._processes:
            code = running.process.returncode
            if code is not None and not running.final:
                log = self._workdir / f"fleet-{running.number}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                ended.append(f"fleet process {running.number} exited with {code}:\n{tail}")
        return ended

    async def wait_until(
        self, check: Callable[[dict[str, Any]], bool], *, timeout: float, what: str
    ) -> dict[str, Any]:
        """Wait for ``check(totals())``; the totals then. Fails early if a process died or
        an agent's login was refused."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            totals = self.totals()
            if check(totals):
                return totals
            if self.exited():
                raise RuntimeError("\n".join(self.exited()))
            if totals["refused_count"] or totals["crashed"]:
                raise RuntimeError(f"agents failed while waiting for {what}: {totals}")
            if loop.time() > deadline:
                raise TimeoutError(f"gave up after {timeout}s waiting for {what}: {totals}")
            await asyncio.sleep(0.2)

    async def wait_connected(self, timeout: float) -> dict[str, Any]:
        """Every agent joined and had a heartbeat acknowledged (so it is a device)."""
        n = self.size
        return await self.wait_until(
            lambda t: t["connected"] == n and t["beaten"] == n,
            timeout=timeout,
            what=f"{n} agents to join and beat",
        )

    async def wait_rejoined(self, sessions: int, timeout: float) -> dict[str, Any]:
        """Every agent connected again, each having joined at least ``sessions`` times."""
        n = self.size
        return await self.wait_until(
            lambda t: t["connected"] == n and t["min_sessions"] >= sessions,
            timeout=timeout,
            what=f"{n} agents to rejoin (session {sessions})",
        )

    async def stop(self, timeout: float = 30) -> None:
        for running in self._processes:
            if running.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    running.process.send_signal(signal.SIGTERM)
        for running in self._processes:
            try:
                await asyncio.wait_for(running.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    running.process.kill()
                await running.process.wait()
            if running.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(running.reader, 5)


# The other side: one process of the fleet, python -m tests.support.fleet_processes SPEC


def spec_json(settings: FleetSettings, members: list[Member], stats_interval_s: float) -> str:
    return json.dumps(
        {
            "settings": asdict(settings),
            "stats_interval_s": stats_interval_s,
            "members": [
                [m.identity.hostname, m.identity.mac, m.identity.private_key.hex(), m.token]
                for m in members
            ],
        }
    )


def _read_spec(text: str) -> tuple[FleetSettings, list[Member], float]:
    spec = json.loads(text)
    members = [
        Member(SimIdentity(hostname, mac, bytes.fromhex(key)), token)
        for hostname, mac, key, token in spec["members"]
    ]
    return FleetSettings(**spec["settings"]), members, float(spec["stats_interval_s"])


class LoopLag:
    """How late this process's event loop runs a timer: when it is seconds late, the
    simulated nodes' pings time out and the simulator, not the cloud, is the bottleneck."""

    def __init__(self, every_s: float = 0.1) -> None:
        self._every = every_s
        self.worst_ms = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._every
            await asyncio.sleep(self._every)
            self.worst_ms = max(self.worst_ms, (loop.time() - due) * 1000)

    def take(self) -> float:
        worst, self.worst_ms = self.worst_ms, 0.0
        return round(worst, 1)


async def _serve(settings: FleetSettings, members: list[Member], every_s: float) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    fleet = Fleet(settings, members)
    lag = LoopLag()
    watching = asyncio.create_task(lag.run(), name="loop-lag")
    fleet.start()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)
        _tell({**fleet.snapshot(), "loop_lag_ms": lag.take()})
    watching.cancel()
    await fleet.stop()
    _tell({**fleet.snapshot(), "loop_lag_ms": lag.take(), "final": True})


def _tell(stats: dict[str, Any]) -> None:
    """One statistics line on stdout, the parent's end of the pipe."""
    sys.stdout.write(json.dumps(stats) + "\n")
    sys.stdout.flush()


def main() -> None:
    settings, members, every_s = _read_spec(Path(sys.argv[1]).read_text())
    # A socket per node, and nothing else: room for a few thousand.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(
        level=logging.ERROR, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    asyncio.run(_serve(settings, members, every_s))


if __name__ == "__main__":
    main()
