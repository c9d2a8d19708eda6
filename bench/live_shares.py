"""Fair shares of the gateway: another tenant's short requests while one tenant holds the
most event streams it may.

Starts the router and the services on PostgreSQL with the gateway's default shares. Tenant
A (four users: its per-user share is 5 streams, its tenant share 20) opens event streams
until the gateway refuses the next one, and holds them; tenant B times
`GET /api/v1/containers`. The baseline (no stream open) and the loaded run alternate in
rounds in the same run, so drift of the machine falls on both alike. The streams are idle
but for the gateway's keepalives: tenant A has no node, so no events.

Figures: list_p50_ms / list_p99_ms with no streams and with A's streams held, the p99
ratio (target < 2), and how many streams A held before the refusal.
Usage: .venv/bin/python bench/live_shares.py [--requests 2000] [--rounds 4]
"""

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.security.test_live_access import event_stream, member_of  # noqa: E402
from tests.support.stack import Stack  # noqa: E402
from tests.support.users import Account, register  # noqa: E402

MEMBERS = 4


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def time_lists(client: httpx.AsyncClient, user: Account, requests: int) -> list[float]:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = await client.get("/api/v1/containers", headers=user.headers)
        samples.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return samples


async def measure(stack: Stack, requests: int, rounds: int) -> dict[str, float]:
    gateway = stack.url("gateway")
    admin = await register(stack)
    members = [admin] + [await member_of(stack, admin) for _ in range(MEMBERS - 1)]
    neighbour = await register(stack)
    quiet: list[float] = []
    loaded: list[float] = []
    held_streams = 0
    refusal = ""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        await time_lists(client, neighbour, 100)  # warm up connections and caches
        for _ in range(rounds):
            quiet += await time_lists(client, neighbour, requests // rounds)
            async with contextlib.AsyncExitStack() as held:
                opened = 0
                for user in members * 10:
                    stream = await held.enter_async_context(event_stream(gateway, user.headers))
                    if stream.status != 200:
                        break
                    opened += 1
                refused = await client.get("/api/v1/events", headers=admin.headers)
                refusal = f"{refused.status_code} {refused.json()['code']}"
                held_streams = opened
                loaded += await time_lists(client, neighbour, requests // rounds)
    quiet_p99, loaded_p99 = percentile(quiet, 0.99), percentile(loaded, 0.99)
    return {
        "streams_held": held_streams,
        "next_stream": refusal,
        "list_p50_ms_no_streams": round(percentile(quiet, 0.5), 2),
        "list_p99_ms_no_streams": round(quiet_p99, 2),
        "list_p50_ms_streams_held": round(percentile(loaded, 0.5), 2),
        "list_p99_ms_streams_held": round(loaded_p99, 2),
        "p99_ratio": round(loaded_p99 / quiet_p99, 2),
        "requests_each": len(quiet),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-shares-"))
    stack = Stack(
        backend="postgresql", workdir=workdir, only=("registry", "orchestrator", "gateway")
    )
    try:
        stack.start()
        figures = asyncio.run(measure(stack, args.requests, args.rounds))
    finally:
        stack.stop()
    stack.cleanup()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
