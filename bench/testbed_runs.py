"""What the testbed benchmarks share: the cloud side on PostgreSQL reachable from the nodes,
N testbed nodes with real agents, everything torn down afterwards; and the figures printed
one JSON object per line."""

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from infra.testbed.testbed import Testbed
from tests.support.agents import AgentFactory
from tests.support.stack import Stack
from tests.support.testbed import TestbedFleet
from tests.support.tls import make_certificates

Measure = Callable[[Stack, TestbedFleet], Awaitable[dict[str, Any]]]


def run_on_testbed(nodes: int, measure: Measure, *, name: str, tls: bool = False) -> dict[str, Any]:
    """``tls``: the router serves wss:// and the gateway https:// with a certificate from an
    authority made for the run (naming 127.0.0.1 and the testbed's side of the cloud), which
    the agents trust."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    stack = Stack(backend="postgresql", workdir=workdir, listen_host="0.0.0.0")
    bed = Testbed(
        nodes,
        router_port=stack.router_port,
        api_port=stack.ports["gateway"],
        logs_dir=workdir / "testbed",
        tls=tls,
    )
    if tls:
        hosts = ["localhost", "127.0.0.1", bed.cloud_ip]
        stack.tls = make_certificates(workdir / "tls", hosts=hosts)
    try:
        stack.start()
        with bed:
            fleet = TestbedFleet(bed, AgentFactory(stack, workdir / "agents"))
            try:
                figures = asyncio.run(measure(stack, fleet))
            finally:
                fleet.agents.stop_all()
    finally:
        stack.stop()
    stack.cleanup()
    return figures


def unit_of(name: str) -> str:
    if name.endswith("_per_min"):
        return "B/min"
    if name.endswith("_ms"):
        return "ms"
    return "s" if name.endswith("_s") else "count"


def print_figures(figures: dict[str, Any], targets: dict[str, float]) -> None:
    """One JSON figure per line; a figure with a target (an upper bound) says if it met it."""
    for name, value in figures.items():
        line: dict[str, Any] = {"name": name, "value": value, "unit": unit_of(name)}
        if name in targets:
            line |= {"target": targets[name], "met": value <= targets[name]}
        print(json.dumps(line), flush=True)
