"""The testbed's command line: build a fleet of simulated nodes and play with its links.

    testbed.py up --nodes 3                 three nodes in a line, their agents enrolled
    testbed.py status                       addresses, processes, state of every link
    testbed.py cut n1 wan                   drop everything on n1's WAN (half-open link)
    testbed.py restore n1 wan
    testbed.py degrade n1 lowpan0 --loss 0.2 --rate 100
    testbed.py ifdown n1 wan / ifup n1 wan  take the interface down / up
    testbed.py stop n1 agent / start n1 agent   (also: engine, broker)
    testbed.py docker n1 ps                 the docker CLI against n1's own engine
    testbed.py exec n2 -- ip -br addr       any command in n2's network
    testbed.py probe n1 n2                  time a 200 kB TCP transfer over their link
    testbed.py down                         tear it all down (--all: every run's leftovers)

With several runs on the machine, name one with ``--run``. The agents need the cloud side on
the bridge's address: run the dev stack with EDGECLOUD_HOST=0.0.0.0 and
EDGECLOUD_ROUTER_HOST=0.0.0.0 (see README.md).
"""

import argparse
import atexit
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from infra.dev.local_agent import enrolment_token
from infra.testbed.network import TestbedError
from infra.testbed.testbed import Testbed, teardown_all
from infra.testbed.topology import parse_links


def enrolled(bed: Testbed, node: str) -> bool:
    credential = bed.node(node).state_dir / "credential.json"
    return credential.exists() and bool(json.loads(credential.read_text()).get("enrolled"))


def start_agent(bed: Testbed, node: str, *, fusion: bool) -> None:
    for port in (bed.router_port, bed.api_port):
        if bed.connect(node, bed.cloud_ip, port) != "connected":
            raise TestbedError(
                f"{node} cannot reach {bed.cloud_ip}:{port}: run the cloud side on every address"
                " (EDGECLOUD_HOST=0.0.0.0 EDGECLOUD_ROUTER_HOST=0.0.0.0 make up)"
            )
    env = bed.fusion_env(node) if fusion else {}
    if not enrolled(bed, node):
        # As the operator (EDGECLOUD_ADMIN_USER / _PASSWORD), like the dev stack's own agent.
        with httpx.Client(base_url=f"http://127.0.0.1:{bed.api_port}", timeout=10) as client:
            env["AGENT_ENROLMENT_TOKEN"] = enrolment_token(client)
    bed.start_agent(node, env)


def chosen(run: str | None) -> Testbed:
    runs = Testbed.runs()
    if run is None and len(runs) == 1:
        run = runs[0]
    if run is None or run not in runs:
        raise TestbedError(f"name a run with --run (runs on this machine: {runs or 'none'})")
    return Testbed.load(run)


def print_status(bed: Testbed) -> None:
    state = bed.status()
    print(f"run {bed.run}: cloud side {bed.bridge} {bed.cloud_ip} {bed.cloud_ip6}")
    print(f"  agents use {bed.router_url} and {bed.api_url}")
    for name, node in state["nodes"].items():
        running = " ".join(sorted(node.get("processes", {}))) or node.get("state", "nothing")
        print(f"{name}  {node['netns']}  running: {running}")
        for interface, link in node.get("links", {}).items():
            peer = node["lowpan"].get(interface, [None, "cloud"])[1]
            rate = f"{link['rate_kbit']} kbit/s" if link["rate_kbit"] else "unlimited"
            flags = ("up" if link["up"] else "DOWN") + (" CUT" if link["cut"] else "")
            addresses = " ".join(a for a in link["addresses"] if not a.startswith("fe80"))
            print(
                f"    {interface:8} -> {peer:5} {flags:8} loss {link['loss']:.0%}"
                f"  {rate:14} mtu {link['mtu']}  {addresses}"
            )


def up(args: argparse.Namespace) -> int:
    bed = Testbed(
        args.nodes,
        links=parse_links(args.links) if args.links else None,
        router_port=args.router_port,
        api_port=args.api_port,
        lowpan_rate_kbit=args.rate,
        lowpan_loss=args.loss,
    )
    # Whatever ends this process before the fleet is handed over, the fleet goes with it.
    atexit.register(bed.teardown)
    bed.up()
    if args.agents:
        for node in bed.nodes:
            start_agent(bed, node.name, fusion=args.fusion)
    if not args.foreground:
        atexit.unregister(bed.teardown)
    print_status(bed)
    if not args.foreground:
        print(f"\ntear it down with: {sys.argv[0]} down --run {bed.run}")
        return 0
    print("\nCtrl-C tears the testbed down.", flush=True)
    while True:
        signal.pause()


def down(args: argparse.Namespace) -> int:
    if args.all:
        print("removed:", " ".join(teardown_all()) or "nothing")
    else:
        chosen(args.run).teardown()
    return 0


def control(args: argparse.Namespace) -> int:
    bed = chosen(args.run)
    match args.command:
        case "cut":
            bed.cut(args.node, args.link)
        case "restore":
            bed.restore(args.node, args.link)
        case "ifdown":
            bed.link_down(args.node, args.link)
        case "ifup":
            bed.link_up(args.node, args.link)
        case "degrade":
            bed.degrade(args.node, args.link, loss=args.loss, rate_kbit=args.rate)
    return 0


def daemon(args: argparse.Namespace) -> int:
    bed = chosen(args.run)
    if args.command == "stop":
        stop = {"engine": bed.stop_engine, "broker": bed.stop_broker, "agent": bed.stop_agent}
        stop[args.daemon](args.node)
    elif args.daemon == "agent":
        start_agent(bed, args.node, fusion=args.fusion)
    elif args.daemon == "engine":
        bed.start_engine(args.node)
    else:
        bed.start_broker(args.node)
    return 0


def passthrough(args: argparse.Namespace) -> int:
    bed = chosen(args.run)
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.command == "docker":
        done = bed.docker(args.node, *argv, timeout=600)
    else:
        done = bed.exec(args.node, argv, timeout=600)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


def probe(args: argparse.Namespace) -> int:
    seconds = chosen(args.run).transfer(args.node, args.target, args.bytes)
    print(f"{args.bytes} bytes in {seconds:.2f} s: {args.bytes * 8 / seconds / 1000:.0f} kbit/s")
    return 0


def status(args: argparse.Namespace) -> int:
    bed = chosen(args.run)
    if args.json:
        print(json.dumps(bed.status(), indent=2))
    else:
        print_status(bed)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="testbed.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--run", help="the run to act on (needed when several exist)")
    commands = top.add_subparsers(dest="command", required=True)

    made = commands.add_parser("up", help="build nodes, links and daemons; start agents")
    made.add_argument("--nodes", type=int, default=3)
    made.add_argument("--links", help="lowpan links as pairs, e.g. 1-2,2-3 (default: a line)")
    made.add_argument("--router-port", type=int, default=8080, help="the router's, cloud side")
    made.add_argument("--api-port", type=int, default=8000, help="the gateway's, cloud side")
    made.add_argument("--rate", type=int, default=250, help="lowpan rate, kbit/s")
    made.add_argument("--loss", type=float, default=0.02, help="lowpan random loss, 0..1")
    made.add_argument("--no-agents", dest="agents", action="store_false")
    add_fusion(made)
    made.add_argument("--foreground", action="store_true", help="stay until Ctrl-C, then tear down")
    made.set_defaults(handler=up)

    gone = commands.add_parser("down", help="tear a run down")
    gone.add_argument("--all", action="store_true", help="every run and leftover on this machine")
    gone.set_defaults(handler=down)

    shown = commands.add_parser("status", help="addresses, processes and links")
    shown.add_argument("--json", action="store_true")
    shown.set_defaults(handler=status)

    for name, text in [
        ("cut", "drop all traffic on a link at a node"),
        ("restore", "undo a cut"),
        ("ifdown", "take a node's interface down"),
        ("ifup", "bring it up again"),
        ("degrade", "change a link's loss and rate (both directions)"),
    ]:
        sub = commands.add_parser(name, help=text)
        sub.add_argument("node")
        sub.add_argument("link", nargs="?" if name != "degrade" else None, default="wan")
        if name == "degrade":
            sub.add_argument("--loss", type=float, help="0..1")
            sub.add_argument("--rate", type=int, help="kbit/s (0: unlimited)")
        sub.set_defaults(handler=control)

    for name in ("start", "stop"):
        sub = commands.add_parser(name, help=f"{name} a node's engine, broker or agent")
        sub.add_argument("node")
        sub.add_argument("daemon", choices=["engine", "broker", "agent"])
        add_fusion(sub)
        sub.set_defaults(handler=daemon)

    for name, text in [("exec", "run a command in a node's network"), ("docker", "node's engine")]:
        sub = commands.add_parser(name, help=text)
        sub.add_argument("node")
        sub.add_argument("argv", nargs=argparse.REMAINDER)
        sub.set_defaults(handler=passthrough)

    timed = commands.add_parser("probe", help="time a TCP transfer over a lowpan link")
    timed.add_argument("node")
    timed.add_argument("target")
    timed.add_argument("--bytes", type=int, default=200_000)
    timed.set_defaults(handler=probe)
    return top


def add_fusion(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--fusion",
        action="store_true",
        help="give agents AGENT_UPLINKS (WAN, then a neighbour's relay) and AGENT_RELAY_LISTEN",
    )


def exit_on_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP end the CLI through its teardown (SIGINT too, since a shell
    starts background jobs with it ignored)."""

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)


def main(argv: Sequence[str] | None = None) -> int:
    if os.geteuid() != 0:
        print("testbed: needs root (namespaces, links, firewall)", file=sys.stderr)
        return 1
    exit_on_signals()
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (TestbedError, LookupError, ValueError, httpx.HTTPError) as err:
        print(f"testbed: {err}", file=sys.stderr)
        return 1
