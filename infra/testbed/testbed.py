"""Several simulated edge nodes on one machine (ARCHITECTURE.md, section 7).

    .venv/bin/python infra/testbed/testbed.py up --nodes 3      # the CLI: see README.md here

Each node is a network namespace with its own Docker engine, Mosquitto broker and, when asked,
edgecloud agent; a ``wan0`` link to the cloud side (a bridge in the root namespace, where the
router and services listen) and ``lowpan`` links to its neighbours, shaped like 6LoWPAN:
MTU 1280, ``tbf`` at 250 kbit/s and random loss in both directions (there is no netem here,
so no added delay). Names and addresses: :mod:`infra.testbed.topology`.

A cut is a firewall DROP of everything on the interface, inside the node: packets vanish and
no RST comes back, like a half-open link. Every firewall rule lives in a node's namespace and
goes with it. A record of each run in /run/ectb lets a later command find it again.
"""

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# Run as a script, only this folder is on the path: make `infra.testbed` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgecloud_agent.broker.setup import ADMIN_SECRET_FILE
from infra.testbed import daemons, network
from infra.testbed.controls import LinkControls
from infra.testbed.topology import (
    INTERNET_GATEWAY,
    INTERNET_IP,
    INTERNET_NET,
    LOWPAN_MTU,
    MQTT_PORT,
    PREFIX,
    Node,
    NodeRef,
    new_run_id,
)

ROOT = Path(__file__).resolve().parents[2]
RECORDS = Path("/run/ectb")
IMAGE = "edgecloud/busybox:latest"
PYTHON = ROOT / ".venv" / "bin" / "python"
PROBE = Path(__file__).resolve().with_name("probe.py")
SUBNETS = range(200, 250)
"""Second octets of the 10.X.0.0/24 cloud-side subnets: rarely used by real networks."""

CONNECT_RESULTS = {0: "connected", 1: "refused", 2: "timeout"}
"""The exit statuses of probe.py connect."""

Completed = subprocess.CompletedProcess[str]


def taken_runs() -> set[str]:
    named = {netns.split("-")[1] for netns in network.namespaces(f"{PREFIX}-")}
    return named | {path.stem for path in RECORDS.glob("*.json")}


def free_subnet(run: str) -> int:
    used = {str(a["local"]) for link in network.ip("-j", "-4", "addr") for a in link["addr_info"]}
    start = int(run, 16) % len(SUBNETS)
    for offset in range(len(SUBNETS)):
        octet = SUBNETS[(start + offset) % len(SUBNETS)]
        if not any(address.startswith(f"10.{octet}.") for address in used):
            return octet
    raise network.TestbedError("no free 10.X.0.0/24 subnet left for the cloud side")


class Testbed(LinkControls):
    """N simulated nodes, their links and daemons. ``with Testbed(...) as bed:`` builds them
    and always tears them down."""

    __test__ = False  # pytest: a class named Test... that is not a test

    def __init__(
        self,
        nodes: int = 3,
        *,
        links: Sequence[tuple[int, int]] | None = None,
        run: str | None = None,
        workdir: Path | None = None,
        logs_dir: Path | None = None,
        subnet: int | None = None,
        router_port: int = 8080,
        api_port: int = 8000,
        lowpan_rate_kbit: int = 250,
        lowpan_loss: float = 0.02,
        images: Sequence[str] = (IMAGE,),
        tls: bool = False,
    ) -> None:
        """``links`` pairs node numbers (a line n1-n2-...-nN by default); ``workdir`` holds
        the nodes' state (keep it short: it holds sockets); ``logs_dir`` keeps their logs
        after teardown; the ports are the router's and the gateway's on the cloud side."""
        run = run or new_run_id(taken_runs())
        super().__init__(
            nodes,
            links=links,
            run=run,
            workdir=workdir or Path("/tmp") / PREFIX / run,
            subnet=subnet or free_subnet(run),
            router_port=router_port,
            api_port=api_port,
            lowpan_rate_kbit=lowpan_rate_kbit,
            lowpan_loss=lowpan_loss,
            tls=tls,
        )
        self.logs_dir = logs_dir
        self.images = list(images)
        self._spawned: list[subprocess.Popen[bytes]] = []

    # --- lifecycle -------------------------------------------------------------------------

    def up(self, *, with_daemons: bool = True) -> Self:
        """Build the network and (``with_daemons``) start every node's engine and broker; on any
        failure, tear down what was built and re-raise."""
        try:
            self.create_network()
            if with_daemons:
                self.start_daemons()
        except BaseException:
            self.teardown()
            raise
        return self

    def create_network(self) -> None:
        self.save()
        self.workdir.mkdir(parents=True, exist_ok=True)
        network.add_bridge(self.bridge, v4=f"{self.cloud_ip}/24", v6=f"{self.cloud_ip6}/64")
        network.add_namespace(self.internet_netns)
        network.add_host(
            netns=self.internet_netns,
            root_end=self.internet_end,
            address=INTERNET_IP,
            gateway=INTERNET_GATEWAY,
        )
        network.accept_forwarding(self.forward_chain, [self.bridge, self.internet_end])
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            network.add_namespace(node.netns)
            network.add_wan(
                bridge=self.bridge,
                root_end=node.wan_end,
                netns=node.netns,
                v4=f"{node.wan_ip}/24",
                v6=f"{node.wan_ip6}/64",
            )
            network.install_controls("wan0", netns=node.netns, inbound_loss=True)
            # The Internet is beyond the cloud side; nothing else is routed (a default route
            # would send a stray lookup off this machine).
            network.ip("route", "add", INTERNET_NET, "via", self.cloud_ip, netns=node.netns)
        for link in self.links:
            a, b = link.ends()
            network.add_lowpan(
                (a.near.netns, a.interface, f"{a.address}/64"),
                (b.near.netns, b.interface, f"{b.address}/64"),
                mtu=LOWPAN_MTU,
            )
            for end in (a, b):
                network.install_controls(end.interface, netns=end.near.netns, inbound_loss=False)
        self.reset_links()

    def start_daemons(self) -> None:
        """Every engine starts at once (each takes about a second), then the rest."""
        started = [(node, self.start_engine(node, wait=False)) for node in self.nodes]
        for node, process in started:
            self._wait_engine(node, process)
            self.load_images(node)
            self.start_broker(node)

    def teardown(self) -> None:
        """Remove everything of this run: agents, containers, engines, brokers, links,
        namespaces, the bridge and the node directories. Safe to call more than once and
        after a partial set-up; raises at the end if something could not be removed."""
        live = [node for node in self.nodes if node.netns in network.namespaces()]
        for node in live:
            with suppress(network.TestbedError):
                node.engine.remove_containers()
        # Agents and brokers first, then the engines (which stop their containerd), then
        # whatever is left.
        for roles in ({"agent", "mosquitto", "other"}, {"dockerd"}, None):
            pids = [p.pid for node in live for p in daemons.processes(node.netns, roles)]
            daemons.terminate(pids, timeout=15)
        self._reap(wait=5)
        for point in network.mounts_under(self.workdir):
            network.run(["umount", "--lazy", str(point)], check=False)
        for node in self.nodes:
            network.delete_namespace(node.netns)
        if self.internet_netns in network.namespaces():
            found = daemons.processes(self.internet_netns)
            daemons.terminate([process.pid for process in found], timeout=5)
        network.delete_namespace(self.internet_netns)
        network.remove_forwarding(self.forward_chain)
        for name in network.interfaces(prefix=self.bridge):
            network.delete_interface(name)
        self._keep_logs()
        shutil.rmtree(self.workdir, ignore_errors=True)
        left = self.leftovers()
        if left:
            # The record stays: `testbed.py down` can try again.
            raise network.TestbedError(f"teardown of run {self.run} left {left}")
        (RECORDS / f"{self.run}.json").unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What of this run still exists: namespaces, interfaces, firewall rules, files."""
        left = network.namespaces(f"{PREFIX}-{self.run}-")
        left += network.interfaces(prefix=self.bridge)
        left += network.root_rules(f"{PREFIX}-{self.run}") + network.root_rules(self.bridge)
        left += [self.internet_netns] if self.internet_netns in network.namespaces() else []
        return left + [str(path) for path in (self.workdir,) if path.exists()]

    def _keep_logs(self) -> None:
        if self.logs_dir is None or not self.workdir.exists():
            return
        for log in self.workdir.rglob("*.log"):
            kept = self.logs_dir / log.relative_to(self.workdir)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, kept)

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.teardown()

    # --- engines, brokers, agents ----------------------------------------------------------

    def start_engine(self, node: NodeRef, *, wait: bool = True) -> "subprocess.Popen[bytes]":
        here = self.node(node)
        here.engine.root.mkdir(parents=True, exist_ok=True)
        process = self._spawn(here, "dockerd", here.engine.argv())
        if wait:
            self._wait_engine(here, process)
            self.load_images(here)
        return process

    def _wait_engine(self, node: Node, process: "subprocess.Popen[bytes]") -> None:
        daemons.wait_ready(
            node.engine.answers,
            process=process,
            log_path=node.directory / "dockerd.log",
            what=f"dockerd of {node.netns}",
            timeout=60,
        )

    def load_images(self, node: NodeRef) -> None:
        """Load the images into the node's engine from a tar saved once per run (the nodes
        cannot reach the local registry on the host's loopback)."""
        if self.images:
            tar = self.workdir / "images.tar"
            daemons.save_images(self.images, tar)
            self.node(node).engine.docker("load", "--input", str(tar), check=True, timeout=120)

    def stop_engine(self, node: NodeRef) -> None:
        """Remove the engine's containers (quicker than its shutdown stopping them), stop it."""
        self.node(node).engine.remove_containers()
        self._stop(node, {"dockerd"})
        self._stop(node, {"containerd"})

    def start_broker(self, node: NodeRef) -> None:
        """The node's broker as ``broker-setup`` makes it: on the node's loopback (its agent
        and sensors), its engine's default bridge (tenant containers), its WAN address and
        its lowpan addresses (peers, over either); the agent's admin login in the node's
        agent state directory. Needs the node's engine (its bridge) up."""
        here = self.node(node)
        here.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = daemons.mosquitto_config(
            here.directory / "mosquitto",
            listeners=[
                ("127.0.0.1", MQTT_PORT),
                (self.bridge_address(here), MQTT_PORT),
                (here.wan_ip, MQTT_PORT),
                *((end.address, MQTT_PORT) for end in self.link_ends(here)),
            ],
            admin_secret=here.state_dir / ADMIN_SECRET_FILE,
        )
        process = self._spawn(here, "mosquitto", ["mosquitto", "-c", str(config)])
        daemons.wait_ready(
            lambda: daemons.listening(here.netns, MQTT_PORT),
            process=process,
            log_path=here.directory / "mosquitto.log",
            what=f"mosquitto of {here.netns}",
            timeout=20,
        )

    def bridge_address(self, node: NodeRef) -> str:
        """The address of the node's ``docker0``, where its containers reach the node."""
        [link] = network.ip("-j", "-4", "addr", "show", "docker0", netns=self.node(node).netns)
        return str(link["addr_info"][0]["local"])

    def stop_broker(self, node: NodeRef) -> None:
        self._stop(node, {"mosquitto"})

    def start_agent(self, node: NodeRef, env: Mapping[str, str] | None = None) -> None:
        """Start an agent on the node: :meth:`agent_env` plus ``env``. (Tests start theirs
        through tests/support/agents.py, which adds the test settings.)"""
        here = self.node(node)
        full = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        full |= self.agent_env(here) | dict(env or {})
        self._spawn(here, "agent", [str(PYTHON), "-m", "edgecloud_agent"], env=full)

    def stop_agent(self, node: NodeRef) -> None:
        self._stop(node, {"agent"})

    def _spawn(
        self, node: Node, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> "subprocess.Popen[bytes]":
        log = node.directory / f"{name}.log"
        process = daemons.spawn(argv, netns=node.netns, log_path=log, env=env, cwd=ROOT)
        self._spawned.append(process)
        return process

    def _stop(self, node: NodeRef, roles: set[str]) -> None:
        found = daemons.processes(self.node(node).netns, roles)
        daemons.terminate([process.pid for process in found], timeout=15)
        self._reap()

    def _reap(self, *, wait: float = 0) -> None:
        """Collect the exit status of the processes spawned here that have ended (waiting up
        to ``wait`` for each: after a teardown all have), so none is left a zombie."""
        for process in self._spawned:
            with suppress(subprocess.TimeoutExpired):
                process.wait(wait)
        self._spawned = [process for process in self._spawned if process.returncode is None]

    def status(self) -> dict[str, Any]:
        """The plan (addresses) plus what runs and how each link is set now."""
        described = self.describe()
        for node in self.nodes:
            entry = described["nodes"][node.name]
            if node.netns not in network.namespaces():
                entry["state"] = "missing"
                continue
            running: dict[str, list[int]] = {}
            for process in daemons.processes(node.netns):
                running.setdefault(process.role, []).append(process.pid)
            entry["processes"] = running
            entry["links"] = self.link_status(node)
        return described

    # --- running things in a node ----------------------------------------------------------

    def nsenter(self, node: NodeRef) -> list[str]:
        """The command prefix that runs a program in the node's network (as the daemons are)."""
        return network.nsenter(self.node(node).netns)

    def internet_command(self) -> list[str]:
        """The command prefix that runs a program on the Internet stand-in (``INTERNET_IP``)."""
        return network.nsenter(self.internet_netns)

    def docker(self, node: NodeRef, *args: str, timeout: float = 60) -> Completed:
        """Run the docker CLI against the node's own engine."""
        return self.node(node).engine.docker(*args, timeout=timeout)

    def exec(self, node: NodeRef, argv: Sequence[str], *, timeout: float = 60) -> Completed:
        """Run a command in the node's network (``ip netns exec``: fine for all but dockerd)."""
        netns = self.node(node).netns
        return network.run(["ip", "netns", "exec", netns, *argv], check=False, timeout=timeout)

    def connect(self, node: NodeRef, host: str, port: int, *, timeout: float = 3) -> str:
        """Open a TCP connection from the node to ``host:port``: ``connected``, ``refused``
        (something answered) or ``timeout`` (packets vanished, as on a cut link)."""
        done = self._probe(node, "connect", host, str(port), str(timeout))
        return CONNECT_RESULTS.get(done.returncode, f"probe failed: {done.stderr}")

    def transfer(self, source: NodeRef, target: NodeRef, size: int) -> float:
        """Seconds to send ``size`` bytes over TCP from ``source`` to its neighbour ``target``,
        across their lowpan link, until ``target`` has them all."""
        address = self.neighbour_address(source, target)
        argv = [*self.nsenter(target), sys.executable, str(PROBE)]
        with subprocess.Popen([*argv, "serve", address], stdout=subprocess.PIPE, text=True) as srv:
            assert srv.stdout is not None
            port = srv.stdout.readline().strip()
            sent = self._probe(source, "send", address, port, str(size))
            srv.wait(30)
        if sent.returncode != 0:
            raise network.TestbedError("transfer failed", argv=sent.args, output=sent.stderr)
        return float(json.loads(sent.stdout)["seconds"])

    def _probe(self, node: NodeRef, *args: str) -> Completed:
        argv = [*self.nsenter(node), sys.executable, str(PROBE), *args]
        return network.run(argv, check=False, timeout=600)

    # --- the record of a run -------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        return {
            "nodes": len(self.nodes),
            "links": [[link.a.near.number, link.b.near.number] for link in self.links],
            "run": self.run,
            "workdir": str(self.workdir),
            "logs_dir": str(self.logs_dir) if self.logs_dir else None,
            "subnet": self.subnet,
            "router_port": self.router_port,
            "api_port": self.api_port,
            "lowpan_rate_kbit": self.lowpan_rate_kbit,
            "lowpan_loss": self.lowpan_loss,
            "images": self.images,
            "tls": self.tls,
        }

    def save(self) -> None:
        RECORDS.mkdir(parents=True, exist_ok=True)
        (RECORDS / f"{self.run}.json").write_text(json.dumps(self.record(), indent=2))

    @classmethod
    def load(cls, run: str) -> "Testbed":
        record = json.loads((RECORDS / f"{run}.json").read_text())
        logs_dir = record.pop("logs_dir")
        return cls(
            record.pop("nodes"),
            links=[(a, b) for a, b in record.pop("links")],
            workdir=Path(record.pop("workdir")),
            logs_dir=Path(logs_dir) if logs_dir else None,
            **record,
        )

    @staticmethod
    def runs() -> list[str]:
        return sorted(path.stem for path in RECORDS.glob("*.json"))


def teardown_all() -> list[str]:
    """Remove every testbed run on this machine, recorded or not (leftovers of crashes)."""
    removed, failed = [], []
    for run in Testbed.runs():
        try:
            Testbed.load(run).teardown()
            removed.append(run)
        except network.TestbedError as err:
            failed.append(str(err))
    for netns in network.namespaces(f"{PREFIX}-"):
        daemons.terminate([process.pid for process in daemons.processes(netns)], timeout=15)
        network.delete_namespace(netns)
        removed.append(netns)
    for name in network.interfaces(prefix=PREFIX):
        network.delete_interface(name)
        removed.append(name)
    if failed:
        raise network.TestbedError(f"removed {removed}, but: {'; '.join(failed)}")
    return removed


if __name__ == "__main__":
    from infra.testbed.cli import main

    sys.exit(main())
