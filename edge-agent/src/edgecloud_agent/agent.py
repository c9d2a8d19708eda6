"""The agent, with every module it runs listed in one place.

identity      state/credentials.py    the node's key pair and enrolment state
telemetry     telemetry/              device info, load, heartbeats, collected data points
runtime       runtime/docker.py       the node's Docker engine (hardening: runtime/hardening.py)
isolation     isolation/              what tenants share on the node, held apart: networks and
                                      firewall, images, /app disks (isolation/provision.py)
broker        broker/                 the node broker's identities, one per client and purpose
journal       state/journal.py        commands applied recently, and their results
desired       state/desired.py        the containers the cloud wants on this node
commands      deploy/commands.py      applying container commands once each
deployments   deploy/applications.py  application archive + script into a container, run
transfers     deploy/transfers.py     artifacts down (resumable) and up (resumable) over HTTP
jobs          deploy/jobs.py          a finished job's logs shipped, then the job removed
logs          deploy/log_shipper.py   containers' output to storage as it comes (state/log_spool.py)
procedures    deploy/rpc.py           edge.device.<key>.container.<action>, on every join
reports       deploy/reports.py       container changes, pull and deployment progress, data
outbox        deploy/outbox.py        reports written before they are sent, until acknowledged
fencing       deploy/fencing.py       on each join, old copies of moved containers stopped first
uplink        uplink/wamp.py          the WAMP session to the cloud over the best link (WAN, mesh)
relay         uplink/relay.py         border router: neighbours' uplinks over LoWPAN to the router
feeds         sensors/feeds.py        sensor topics into containers, in sessions that survive moves
neighbours    peers/neighbours.py     round trips to nearby peers, reported in heartbeats
migrations    peers/migration.py      moving containers to and from peers (MQTT, peers/channel.py)
monitor       monitor/                pressure, health and drain triggers: edge.migration.request
terminal      terminal/               exec and interactive shells inside tenant containers
"""

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from edgecloud_contracts.containers import ContainerReport

from .broker.control import DynsecAdmin
from .broker.identities import BrokerError, BrokerIdentities
from .broker.setup import read_admin_secret
from .deploy import rpc
from .deploy.applications import Deployments
from .deploy.commands import CommandExecutor, contexts_dir
from .deploy.fencing import Fencing
from .deploy.jobs import Jobs
from .deploy.log_shipper import LogShipper
from .deploy.outbox import Outbox
from .deploy.reports import ReportSender, forward_container_events, send_inventory
from .deploy.transfers import CloudFiles
from .isolation.cgroups import Cgroups, GroupLimits, tenant_group
from .isolation.disks import AppDisks
from .isolation.firewall import FirewallError, FirewallPolicy, NodeFirewall
from .isolation.images import TenantImages
from .isolation.networks import TenantNetworks
from .isolation.provision import BeforeRemove, BrokerAddress, Provisioner
from .monitor.monitor import Monitor, request_over
from .peers.migration import PeerMigrations
from .peers.neighbours import NeighbourProber
from .peers.packages import PackageStore
from .peers.relaying import PeerRelay
from .runtime.docker import DockerRuntime
from .runtime.errors import RuntimeFailure
from .sensors.feeds import SensorFeeds, run_feeds
from .settings import AgentSettings
from .state import credentials
from .state.desired import DesiredState
from .state.journal import CommandJournal
from .state.log_spool import LogSpool
from .telemetry.datapoints import DataCollector
from .telemetry.heartbeat import HeartbeatReporter
from .telemetry.system import SystemProbe, kernel_pid_max
from .terminal import rpc as terminal_rpc
from .terminal.shells import ShellSessions
from .uplink.errors import UplinkError
from .uplink.relay import Relay, host_port, router_address
from .uplink.wamp import Backoff, Login, Uplink

logger = logging.getLogger(__name__)


def tenant_share(settings: AgentSettings) -> GroupLimits:
    """One tenant's share of this node, for its cgroup."""
    share = settings.tenant_share
    return GroupLimits(
        memory=int(psutil.virtual_memory().total * share),
        cpus=max(0.01, (psutil.cpu_count() or 1) * share),
        pids=max(8, int((settings.node_pids or kernel_pid_max()) * share)),
    )


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.probe = SystemProbe(settings)
        self.credential = credentials.load_or_create(settings.state_dir, self.probe.key)
        token = settings.enrolment_token.get_secret_value() if settings.enrolment_token else None
        self._presents_token = bool(token) and not self.credential.enrolled
        # Only with a CA file of its own: otherwise the libraries' defaults (system CAs).
        self._tls = settings.tls_context() if settings.ca_file is not None else None
        self.uplink = Uplink(
            transports=settings.transports,
            realm=settings.realm,
            login=Login(
                device_key=self.credential.device_key,
                private_key=self.credential.private_key,
                enrolment_token=token if self._presents_token else None,
            ),
            backoff=Backoff(settings.reconnect_initial_s, settings.reconnect_max_s),
            probe_interval_s=settings.probe_interval_s,
            return_after=settings.return_after_probes,
            duty_cycle=settings.duty_cycle,
            on_join=self._on_join,
            tls=self._tls,
        )
        self._stop = asyncio.Event()
        self.executor: CommandExecutor | None = None
        """Set while the agent runs: the container procedures are registered only then."""
        self.fencing: Fencing | None = None
        self.migrations: PeerMigrations | None = None
        self.relaying: PeerRelay | None = None
        self.shells: ShellSessions | None = None

    async def _on_join(self) -> None:
        self.uplink.enrolment_done()
        if not self.credential.enrolled:
            self.credential = credentials.mark_enrolled(self.settings.state_dir, self.credential)
            logger.info("enrolled as %s (%s)", self.probe.id, self.probe.key)
        if self.fencing is not None:
            # Before anything else on this session: old copies stop before they report.
            await self.fencing.on_join(self.uplink.sessions_joined)
        if self.executor is not None:
            try:
                await rpc.register(self.uplink, self.credential.device_key, self.executor)
                for peer_role in (self.migrations, self.relaying):
                    if peer_role is not None:
                        for uri, handle in peer_role.procedures().items():
                            await self.uplink.register(uri, handle)
                if self.shells is not None:
                    await terminal_rpc.register(
                        self.uplink, self.credential.device_key, self.executor.runtime, self.shells
                    )
            except UplinkError as err:
                # The session stays up (heartbeats still tell the cloud how the node is).
                logger.error("cannot register the container procedures: %s", err)

    def stop(self) -> None:
        self._stop.set()

    def _broker_identities(self) -> BrokerIdentities | None:
        """The node broker's identities, if the agent can administer the broker."""
        settings = self.settings
        if not settings.mqtt_url:
            return None
        secret = read_admin_secret(settings.admin_secret_file)
        if secret is None:
            logger.error(
                "no broker administrator login in %s: containers get no broker login and no"
                " sensor feed runs (set the broker up with `edgecloud-agent broker-setup`)",
                settings.admin_secret_file,
            )
            return None
        admin = DynsecAdmin(
            url=settings.mqtt_url, username=settings.broker_admin_user, password=secret
        )
        return BrokerIdentities(admin=admin, state_dir=settings.state_dir)

    async def _isolation(
        self, stack: AsyncExitStack, runtime: DockerRuntime, *, before_remove: BeforeRemove
    ) -> Provisioner:
        """The node's isolation of tenants, set up before any container is touched;
        ``before_remove`` is awaited before it removes a container."""
        settings = self.settings
        cgroups = Cgroups(runtime)
        images = TenantImages(
            runtime=runtime,
            cgroups=cgroups,
            state_dir=settings.state_dir,
            work_dir=settings.state_dir / "images",
        )
        stack.callback(images.close)
        identities = self._broker_identities()
        if identities is not None:
            stack.callback(identities.close)
        broker = None
        if identities is not None:
            host = settings.broker_container_host
            if not host:
                try:
                    host = await runtime.gateway_of("bridge") or ""
                except RuntimeFailure as err:
                    logger.error("Docker's default bridge is unknown: %s", err)
            if host:
                broker = BrokerAddress(host, urlsplit(settings.mqtt_url).port or 1883)
            else:
                logger.error("containers cannot reach the node's broker (broker_container_host)")
        firewall = NodeFirewall(
            FirewallPolicy(
                broker=(broker.host, broker.port) if broker is not None else None,
                internet=settings.tenant_internet,
                extra_blocked=tuple(settings.tenant_blocked_networks),
            )
        )
        try:
            await firewall.apply()
        except FirewallError as err:
            # Containers with a network are refused until the rules are in place.
            logger.error("%s", err.message)
        return Provisioner(
            runtime=runtime,
            images=images,
            networks=TenantNetworks(runtime, pool=settings.tenant_subnets),
            firewall=firewall,
            disks=AppDisks(
                runtime=runtime,
                root=settings.state_dir / "disks",
                reserve_bytes=settings.disk_reserve_bytes,
            ),
            identities=identities,
            broker=broker,
            cgroups=cgroups,
            tenant_share=tenant_share(settings),
            before_remove=before_remove,
        )

    async def _recover(self, node: Provisioner, desired: DesiredState) -> None:
        """After a start: disks mounted again, tenants' cgroups holding their shares again
        (a reboot takes them; Docker would restart containers in bare ones), what a crash
        left behind released, older containers moved onto their tenant's networks."""
        wanted = {entry.spec.container_id for entry in desired.all()}
        if node.tenant_share is not None:
            for tenant_id in {entry.spec.tenant_id for entry in desired.all()}:
                try:
                    await node.cgroups.ensure(tenant_group(tenant_id), node.tenant_share)
                except RuntimeFailure as err:
                    logger.error("the share of %s on this node is not held: %s", tenant_id, err)
        try:
            present = {r.container_id for r in await node.runtime.managed_containers()}
        except RuntimeFailure as err:
            logger.warning("cannot list the node's containers (%s): keeping every disk", err)
            present = None
        if present is not None:
            await node.disks.remount(keep=wanted | {cid for cid in present if cid})
            try:
                await node.adopt([entry.spec for entry in desired.all()])
            except RuntimeFailure as err:
                logger.warning("older containers not moved to their networks: %s", err)
        else:
            await node.disks.remount(keep=wanted | {i.stem for i in node.disks.images()})
        identities = node.identities
        if identities is not None:
            try:
                # No migration runs across a restart; containers gone meanwhile lose theirs.
                for migration in identities.owners("peer"):
                    await identities.forget("peer", migration)
                for container_id in identities.owners("container") - wanted:
                    await identities.forget("container", container_id)
            except BrokerError as err:
                logger.warning("the broker's identities were not tidied: %s", err)

    async def _start_relay(self, stack: AsyncExitStack) -> None:
        """The border-router role: neighbours' uplinks over the mesh, on to our router."""
        settings = self.settings
        listen_host, listen_port = host_port(settings.relay_listen)
        router_host, router_port = router_address(settings.router_url)
        relay = Relay(
            listen_host=listen_host,
            listen_port=listen_port,
            router_host=router_host,
            router_port=router_port,
            max_connections=settings.relay_max_connections,
            rate_bytes_per_s=settings.relay_rate_bytes_per_s,
            handshake_timeout_s=settings.relay_handshake_timeout_s,
            idle_timeout_s=settings.relay_idle_timeout_s,
            beacon_interval_s=settings.relay_beacon_interval_s,
        )
        try:
            await stack.enter_async_context(relay)
        except OSError as err:
            # e.g. the LoWPAN address is not up yet: the node keeps running without the role
            logger.error("cannot relay for neighbours on %s: %s", settings.relay_listen, err)

    async def run(self) -> None:
        logger.info(
            "agent for %s (%s) starting, router %s",
            self.probe.id,
            self.probe.key,
            self.settings.router_url,
        )
        if not self.credential.enrolled and not self._presents_token:
            logger.warning("this node is not enrolled yet: start the agent with --enrol TOKEN")
        settings = self.settings
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(
                DockerRuntime(
                    url=settings.docker_url,
                    timeout_s=settings.call_timeout_s,
                    pull_timeout_s=settings.pull_timeout_s,
                    policy=settings.container_policy,
                )
            )
            journal = CommandJournal(
                settings.state_dir,
                max_entries=settings.journal_max_entries,
                max_age_s=settings.journal_max_age_s,
            )
            stack.callback(journal.close)
            desired = DesiredState(settings.state_dir)
            stack.callback(desired.close)
            log_spool = LogSpool(settings.state_dir, max_bytes=settings.log_spool_bytes)
            stack.callback(log_spool.close)
            log_files = CloudFiles(settings.api_url, tls=self._tls)
            stack.push_async_callback(log_files.close)
            shipper = LogShipper(
                runtime=runtime,
                spool=log_spool,
                uplink=self.uplink,
                files=log_files,
                # Logs are bulk: held on the slow mesh, shipped when the WAN is back.
                gate=self.uplink.wait_bulk_ok,
                segment_bytes=settings.log_segment_bytes,
                segment_s=settings.log_segment_s,
                timeout_s=settings.call_timeout_s,
            )
            stack.push_async_callback(shipper.close)
            node = await self._isolation(stack, runtime, before_remove=shipper.seal)
            await self._recover(node, desired)
            outbox = Outbox(settings.state_dir)
            stack.callback(outbox.close)
            self.fencing = fencing = Fencing(
                node=node,
                desired=desired,
                call=self.uplink.call,
                timeout_s=settings.call_timeout_s,
                stop_timeout_s=settings.stop_timeout_s,
                retention_s=settings.kept_copy_retention_s,
                hold_s=settings.placement_hold_s,
            )
            stack.callback(setattr, self, "fencing", None)
            reports = ReportSender(
                uplink=self.uplink,
                outbox=outbox,
                timeout_s=settings.call_timeout_s,
                hold=lambda session: not fencing.reports_may_go(session),
            )
            # Bulk transfers pause on the slow mesh and resume on the WAN.
            files = CloudFiles(settings.api_url, gate=self.uplink.wait_bulk_ok, tls=self._tls)
            stack.push_async_callback(files.close)
            outgoing = settings.state_dir / "outgoing"
            deployments = Deployments(
                runtime=runtime,
                files=files,
                report=reports.deployment,
                deliver=reports.deliver_deployment,
                state_dir=settings.state_dir,
            )
            stack.push_async_callback(deployments.close)
            jobs = Jobs(
                node=node,
                desired=desired,
                uplink=self.uplink,
                files=files,
                outgoing_dir=outgoing,
                on_removed=reports.container,
                timeout_s=settings.call_timeout_s,
            )
            stack.push_async_callback(jobs.close)
            collector = DataCollector(
                runtime=runtime,
                desired=desired,
                send=reports.data,
                mqtt_url=settings.mqtt_url,
                identities=node.identities,
                owner=self.credential.device_key,
            )
            stack.push_async_callback(collector.close)

            def observe(report: ContainerReport) -> None:
                jobs.observe(report)
                shipper.observe(report)
                collector.observe(report)

            # What this node keeps for its peers (collaboration level 1).
            packages = PackageStore(settings.state_dir / "packages")
            for dropped in packages.sweep():
                logger.warning("package of %s dropped after its retention", dropped)

            async def app_root(container_id: str) -> Path:
                mounted = node.app_root(container_id)
                # Containers made before /app disks keep a plain Docker volume.
                return mounted if mounted is not None else await runtime.volume_path(container_id)

            feeds = SensorFeeds(
                app_root=app_root, identities=node.identities, local_broker_url=settings.mqtt_url
            )
            stack.push_async_callback(feeds.close)
            self.executor = CommandExecutor(
                node=node,
                journal=journal,
                desired=desired,
                stop_timeout_s=settings.stop_timeout_s,
                on_pull=reports.pull,
                deployments=deployments,
                files=files,
                outgoing_dir=outgoing,
                bulk_gate=self.uplink.wait_bulk_ok,
                copy_out_max_bytes=settings.copy_out_max_bytes,
                packages=packages,
                feeds=feeds,
            )
            stack.callback(setattr, self, "executor", None)

            migrations_dir = settings.state_dir / "migrations"
            migrations_dir.mkdir(parents=True, exist_ok=True)
            self.migrations = PeerMigrations(
                me=self.credential.device_key,
                node=node,
                desired=desired,
                call=self.uplink.call,
                work_dir=migrations_dir,
                local_broker_url=settings.mqtt_url,
                collaboration_level=settings.collaboration_level,
                feeds=feeds,
                contexts_dir=contexts_dir(outgoing),
                own_peer_url=settings.peer_url,
                own_peer_urls=settings.peer_addresses,
                mesh_images=settings.peer_mesh_images,
                packages=packages,
            )
            stack.push_async_callback(self.migrations.close)
            stack.callback(setattr, self, "migrations", None)
            # Level 0: any node lends its broker to two peers that do not reach each other.
            self.relaying = PeerRelay(me=self.credential.device_key, identities=node.identities)
            stack.push_async_callback(self.relaying.close)
            stack.callback(setattr, self, "relaying", None)
            self.shells = ShellSessions(
                runtime, link=lambda: self.uplink.link, max_sessions=settings.shell_max_sessions
            )
            stack.push_async_callback(self.shells.close_all)
            stack.callback(setattr, self, "shells", None)
            deployments.resume_unfinished()
            if settings.relay_listen:
                await self._start_relay(stack)
            neighbours = NeighbourProber(every_s=settings.neighbour_probe_interval_s)
            reporter = HeartbeatReporter(
                uplink=self.uplink,
                probe=self.probe,
                runtime=runtime,
                interval_s=settings.heartbeat_interval_s,
                timeout_s=settings.call_timeout_s,
                lowpan_interval_s=settings.lowpan_heartbeat_interval_s,
                neighbours=neighbours,
            )
            monitor = Monitor(
                config=settings.monitor,
                request=request_over(self.uplink.call, timeout_s=settings.call_timeout_s),
            )
            async with asyncio.TaskGroup() as tasks:
                uplink_task = tasks.create_task(self.uplink.run(), name="uplink")
                reporter_task = tasks.create_task(reporter.run(), name="heartbeat")
                neighbours_task = tasks.create_task(neighbours.run(), name="neighbours")
                monitor_task = (
                    tasks.create_task(monitor.run(), name="monitor")
                    if settings.monitor_enabled
                    else None
                )
                feeds_task = tasks.create_task(
                    run_feeds(feeds, lambda: [d.spec for d in desired.all() if d.running]),
                    name="sensor-feeds",
                )
                reports_task = tasks.create_task(reports.run(), name="node-reports")
                events_task = tasks.create_task(
                    forward_container_events(runtime, reports, observe),
                    name="container-events",
                )
                inventory_task = tasks.create_task(
                    send_inventory(
                        runtime,
                        reports,
                        self.uplink,
                        every_s=settings.inventory_interval_s,
                        observe=observe,
                    ),
                    name="inventory",
                )
                data_task = tasks.create_task(
                    collector.run(ready=self.uplink.wait_connected), name="data-points"
                )
                firewall_task = tasks.create_task(node.firewall.watch(), name="firewall")
                logs_task = tasks.create_task(shipper.run(), name="log-shipper")
                fencing_task = tasks.create_task(fencing.run(self.uplink), name="fencing")
                stop_task = tasks.create_task(self._stop.wait(), name="stop")
                await asyncio.wait({uplink_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                # Let commands in progress finish and their answers go out, then the beat
                # in flight, then leave: the cloud hears the leave last.
                await self.executor.wait_idle(settings.call_timeout_s)
                events_task.cancel()
                neighbours_task.cancel()
                if monitor_task is not None:
                    monitor_task.cancel()
                feeds_task.cancel()
                inventory_task.cancel()
                data_task.cancel()
                firewall_task.cancel()
                logs_task.cancel()
                fencing_task.cancel()
                reports_task.cancel()
                reporter.stop()
                await reporter_task
                await self.uplink.close()
                stop_task.cancel()
        logger.info("agent stopped")
