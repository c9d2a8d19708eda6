"""The peer-selection planner: pure, given what the scheduler knows of the nodes.

ARCHITECTURE 4.6 and the reference design (5.2): keep only the peers that can take a
container (online, granted to its tenant, same architecture, collaboration level for
compute, its published ports within the peer's range and free there, enough CPU, memory
and disk, round trip under the threshold), then pick the lowest cost, latency over
remaining capacity. One container takes the cheapest peer directly; several are assigned
together exactly (a binary program solved by HiGHS through scipy's ``milp``), and greedily
when the solver cannot give an optimum in time. Containers placed together never share a
host port on one peer.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from edgecloud_contracts.devices import HostPort, port_refusal
from edgecloud_contracts.heartbeat import NodePolicy

logger = logging.getLogger(__name__)

Method = Literal["single", "milp", "greedy"]
ExclusionReason = Literal[
    "is_source",
    "offline",
    "not_granted",
    "arch_mismatch",
    "level_too_low",
    "ports_not_allowed",
    "port_out_of_range",
    "port_taken",
    "cpu",
    "memory",
    "disk",
    "latency",
]
UnplacedReason = Literal["no_candidate", "no_capacity"]

RTT_FLOOR_MS = 1.0
"""Added to every round trip, so that peers at RTT 0 still rank by their capacity."""
MIN_REMAINING_SHARE = 0.01
"""Keeps the cost of filling a node to the brim finite (at 100 times its latency)."""

_RESOURCES: tuple[ExclusionReason, ...] = ("cpu", "memory", "disk")
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
# HiGHS checks constraints to ~1e-7; a solution it accepts is re-checked with this slack.
_CAPACITY_SLACK = 1e-9

Resources = tuple[float, float, float]
"""CPU cores, memory bytes, disk bytes: the order of ``_RESOURCES``."""


@dataclass(frozen=True, slots=True)
class Demand:
    """A container that has to move, and what its new node must give it."""

    container_id: str
    tenant_id: str
    source: str
    """The device key it leaves; round trips are measured from there."""
    arch: str | None
    """The image's architecture; None when the image runs anywhere."""
    cpus: float
    memory: int
    disk: int
    ports: frozenset[HostPort] = frozenset()
    """The host ports it publishes: its new node must publish them too."""

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.memory < 0 or self.disk < 0:
            raise ValueError(f"container {self.container_id}: negative resource demand")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node that might take containers, as its heartbeats and the grants describe it."""

    key: str
    online: bool
    arch: str
    tenants: frozenset[str]
    """The tenants granted this node."""
    cpu_free: float
    memory_free: int
    disk_free: int
    level: int
    """Collaboration level: 0 messaging only, 1 storage, 2 storage, CPU and memory."""
    rtt_ms: Mapping[str, float]
    """Measured round trip from each source device key; a missing source is unknown."""
    policy: NodePolicy | None = None
    """What its operator allows tenant containers (the range of host ports)."""
    ports_taken: frozenset[HostPort] = frozenset()
    """The host ports its containers publish already."""


@dataclass(frozen=True, slots=True)
class Policy:
    max_rtt_ms: float = 100.0
    unknown_rtt_ms: float | None = None
    """Assumed when a source never measured a candidate; None leaves the candidate out."""
    min_level: int = 2
    milp_time_limit_s: float = 0.5
    headroom: float = 0.1
    """Share of each free resource left untouched, so that the move meant to relieve one
    node does not overload another."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.headroom < 1.0:
            raise ValueError("headroom must be in [0, 1)")
        if self.max_rtt_ms <= 0 or self.milp_time_limit_s <= 0:
            raise ValueError("max_rtt_ms and milp_time_limit_s must be positive")


DEFAULT_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class Exclusion:
    key: str
    reason: ExclusionReason
    """The first check the node failed, cheapest checks first."""


@dataclass(frozen=True, slots=True)
class Choice:
    """One container on one node, at a cost: an option weighed, or the one taken."""

    container_id: str
    target: str
    cost: float
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class Unplaced:
    container_id: str
    reason: UnplacedReason
    """``no_candidate``: no node passed the filters; ``no_capacity``: some did, but the
    containers placed with it took the room."""


@dataclass(frozen=True, slots=True)
class Plan:
    choices: list[Choice]
    """In the order of the demands."""
    unplaced: list[Unplaced]
    weighed: dict[str, list[Choice]]
    """Per container, every node that passed the filters, cheapest first."""
    excluded: dict[str, list[Exclusion]]
    method: Method
    elapsed_ms: float

    def as_record(self) -> dict[str, Any]:
        """What the scheduler stores as the migration's plan (JSON-able)."""
        return {
            "method": self.method,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "choices": [
                {
                    "container": c.container_id,
                    "target": c.target,
                    "cost": round(c.cost, 4),
                    "rtt_ms": c.rtt_ms,
                }
                for c in self.choices
            ],
            "unplaced": [{"container": u.container_id, "reason": u.reason} for u in self.unplaced],
            "containers": {
                container_id: {
                    "weighed": [
                        {"key": o.target, "cost": round(o.cost, 4), "rtt_ms": o.rtt_ms}
                        for o in options
                    ],
                    "excluded": [
                        {"key": e.key, "reason": e.reason}
                        for e in self.excluded.get(container_id, [])
                    ],
                }
                for container_id, options in self.weighed.items()
            },
        }


def plan(
    demands: Sequence[Demand], candidates: Sequence[Candidate], policy: Policy = DEFAULT_POLICY
) -> Plan:
    """Where each container goes: the cheapest peer for one, the exact assignment for
    several (greedy when the solver fails or runs out of time)."""
    started = time.perf_counter()
    weighed, excluded, capacity = _weigh(demands, candidates, policy)
    method: Method
    if len(demands) == 1:
        options = weighed[demands[0].container_id]
        chosen, method = options[:1], "single"
    else:
        exact = _assign_exactly(demands, weighed, capacity, policy)
        if exact is None:
            chosen, method = _assign_greedily(demands, weighed, capacity), "greedy"
        else:
            chosen, method = exact, "milp"
    return _plan_of(demands, chosen, weighed, excluded, method, started)


def greedy(
    demands: Sequence[Demand], candidates: Sequence[Candidate], policy: Policy = DEFAULT_POLICY
) -> Plan:
    """The fallback on its own: largest container first, each to its cheapest node with
    room left."""
    started = time.perf_counter()
    weighed, excluded, capacity = _weigh(demands, candidates, policy)
    chosen = _assign_greedily(demands, weighed, capacity)
    return _plan_of(demands, chosen, weighed, excluded, "greedy", started)


def _weigh(
    demands: Sequence[Demand], candidates: Sequence[Candidate], policy: Policy
) -> tuple[dict[str, list[Choice]], dict[str, list[Exclusion]], dict[str, Resources]]:
    ids = [d.container_id for d in demands]
    if len(set(ids)) != len(ids):
        raise ValueError("a container appears twice among the demands")
    by_key = sorted(candidates, key=lambda c: c.key)
    capacity = {c.key: _usable(c, policy) for c in by_key}
    if len(capacity) != len(by_key):
        raise ValueError("a node appears twice among the candidates")
    weighed: dict[str, list[Choice]] = {}
    excluded: dict[str, list[Exclusion]] = {}
    for demand in demands:
        options: list[Choice] = []
        exclusions: list[Exclusion] = []
        for candidate in by_key:
            reason = _unfit(demand, candidate, capacity[candidate.key], policy)
            if reason is None:
                rtt = _round_trip(demand, candidate, policy)
                if rtt is not None:
                    cost = _cost(demand, candidate, rtt)
                    options.append(Choice(demand.container_id, candidate.key, cost, rtt))
                    continue
                reason = "latency"
            exclusions.append(Exclusion(candidate.key, reason))
        # Stable sort on candidates already in key order: equal costs go by key.
        options.sort(key=lambda o: o.cost)
        weighed[demand.container_id], excluded[demand.container_id] = options, exclusions
    return weighed, excluded, capacity


def _unfit(
    demand: Demand, candidate: Candidate, usable: Resources, policy: Policy
) -> ExclusionReason | None:
    if candidate.key == demand.source:
        return "is_source"
    if not candidate.online:
        return "offline"
    if demand.tenant_id not in candidate.tenants:
        return "not_granted"
    if demand.arch is not None and _arch(demand.arch) != _arch(candidate.arch):
        return "arch_mismatch"
    if candidate.level < policy.min_level:
        return "level_too_low"
    refused = port_refusal(candidate.policy, demand.ports, candidate.ports_taken)
    if refused is not None:
        return refused[0]
    for resource, need, room in zip(_RESOURCES, _need(demand), usable, strict=True):
        if need > room:
            return resource
    return None


def _round_trip(demand: Demand, candidate: Candidate, policy: Policy) -> float | None:
    """The round trip to rank by, or None when it is unknown or over the threshold."""
    rtt = candidate.rtt_ms.get(demand.source, policy.unknown_rtt_ms)
    if rtt is None or rtt > policy.max_rtt_ms:
        return None
    return max(rtt, 0.0)


def _cost(demand: Demand, candidate: Candidate, rtt_ms: float) -> float:
    # Reference design 5.2: proportional to latency, inversely proportional to the
    # computing capability left. "Left" is the tighter of CPU and memory after the move,
    # as a share of what was free before it: a node the container would nearly fill ranks
    # below one it barely dents. Disk is only a filter: it does not compute. The cost is
    # per container, as if it moved alone, which keeps the exact assignment linear; the
    # capacity constraints keep the combination feasible.
    remaining = min(
        _share_left(demand.cpus, candidate.cpu_free),
        _share_left(demand.memory, candidate.memory_free),
    )
    return (rtt_ms + RTT_FLOOR_MS) / max(remaining, MIN_REMAINING_SHARE)


def _share_left(need: float, free: float) -> float:
    if need <= 0:
        return 1.0
    return (free - need) / free if free > 0 else 0.0


def _need(demand: Demand) -> Resources:
    return (demand.cpus, float(demand.memory), float(demand.disk))


def _usable(candidate: Candidate, policy: Policy) -> Resources:
    keep = 1.0 - policy.headroom
    return (
        candidate.cpu_free * keep,
        candidate.memory_free * keep,
        candidate.disk_free * keep,
    )


def _arch(name: str) -> str:
    normal = name.strip().lower()
    return _ARCH_ALIASES.get(normal, normal)


def _assign_exactly(
    demands: Sequence[Demand],
    weighed: dict[str, list[Choice]],
    capacity: dict[str, Resources],
    policy: Policy,
) -> list[Choice] | None:
    """The optimal assignment, or None when the solver gives none in time."""
    pairs = [option for d in demands for option in weighed[d.container_id]]
    if not pairs:
        return []
    needs = {d.container_id: _need(d) for d in demands}
    # Each placed container earns more than all the costs together, so the solver places
    # as many containers as fit first, and only then minimises their cost.
    reward = 1.0 + sum(options[-1].cost for options in weighed.values() if options)
    objective = np.array([pair.cost - reward for pair in pairs])

    container_rows: dict[str, int] = {}
    capacity_rows: dict[tuple[str, int], int] = {}
    once_row, cap_row, cap_col, cap_share = [], [], [], []
    for column, pair in enumerate(pairs):
        once_row.append(container_rows.setdefault(pair.container_id, len(container_rows)))
        need, usable = needs[pair.container_id], capacity[pair.target]
        for resource in range(len(_RESOURCES)):
            if need[resource] > 0:
                # As a share of the node's usable amount: cores and bytes on one scale.
                cap_row.append(
                    capacity_rows.setdefault((pair.target, resource), len(capacity_rows))
                )
                cap_col.append(column)
                cap_share.append(need[resource] / usable[resource])
    width = len(pairs)
    at_most_once = csr_array(
        (np.ones(width), (once_row, np.arange(width))), shape=(len(container_rows), width)
    )
    constraints = [LinearConstraint(at_most_once, ub=1.0)]
    if capacity_rows:
        within = csr_array((cap_share, (cap_row, cap_col)), shape=(len(capacity_rows), width))
        constraints.append(LinearConstraint(within, ub=1.0))
    sharing = _port_sharing(pairs, {d.container_id: d.ports for d in demands})
    if sharing:
        # At most one of the containers wanting a host port takes it on each peer.
        rows = [row for row, columns in enumerate(sharing) for _ in columns]
        columns = [column for columns in sharing for column in columns]
        once_per_port = csr_array(
            (np.ones(len(columns)), (rows, columns)), shape=(len(sharing), width)
        )
        constraints.append(LinearConstraint(once_per_port, ub=1.0))

    try:
        result = milp(
            objective,
            integrality=np.ones(width),
            bounds=Bounds(0.0, 1.0),
            constraints=constraints,
            # The default relative gap (1e-4) would be loose next to the large reward.
            options={"time_limit": policy.milp_time_limit_s, "mip_rel_gap": 0.0},
        )
    except Exception:
        # Any solver failure degrades to the greedy assignment rather than no peer at all.
        logger.warning("exact peer assignment failed, assigning greedily", exc_info=True)
        return None
    if result.status != 0 or result.x is None:
        logger.warning(
            "exact peer assignment gave no optimum (%s), assigning greedily", result.message
        )
        return None
    chosen = [pair for pair, taken in zip(pairs, result.x, strict=True) if taken > 0.5]
    ports = {d.container_id: d.ports for d in demands}
    if not _fits_together(chosen, needs, capacity, ports):
        logger.warning("exact peer assignment overfills a node, assigning greedily")
        return None
    return chosen


def _port_sharing(pairs: list[Choice], ports: dict[str, frozenset[HostPort]]) -> list[list[int]]:
    """The columns of the pairs that want one host port on one peer, where more than one
    does."""
    wanting: dict[tuple[str, HostPort], list[int]] = {}
    for column, pair in enumerate(pairs):
        for key in ports[pair.container_id]:
            wanting.setdefault((pair.target, key), []).append(column)
    return [columns for columns in wanting.values() if len(columns) > 1]


def _fits_together(
    chosen: list[Choice],
    needs: dict[str, Resources],
    capacity: dict[str, Resources],
    ports: dict[str, frozenset[HostPort]],
) -> bool:
    used: dict[str, list[float]] = {}
    published: dict[str, set[HostPort]] = {}
    for choice in chosen:
        total = used.setdefault(choice.target, [0.0] * len(_RESOURCES))
        for resource, need in enumerate(needs[choice.container_id]):
            total[resource] += need
        held = published.setdefault(choice.target, set())
        if held & ports[choice.container_id]:
            return False
        held |= ports[choice.container_id]
    return all(
        total <= room * (1 + _CAPACITY_SLACK)
        for key, totals in used.items()
        for total, room in zip(totals, capacity[key], strict=True)
    )


def _assign_greedily(
    demands: Sequence[Demand], weighed: dict[str, list[Choice]], capacity: dict[str, Resources]
) -> list[Choice]:
    room = {key: list(usable) for key, usable in capacity.items()}
    published: dict[str, set[HostPort]] = {key: set() for key in capacity}
    # Largest first: the big containers have the fewest places to go. Size is the
    # dominant share of the capacity their options offer together.
    pool = [0.0] * len(_RESOURCES)
    for key in {o.target for options in weighed.values() for o in options}:
        pool = [p + u for p, u in zip(pool, capacity[key], strict=True)]

    def size(demand: Demand) -> float:
        need = _need(demand)
        return max((n / p for n, p in zip(need, pool, strict=True) if p > 0), default=0.0)

    chosen: list[Choice] = []
    for demand in sorted(demands, key=lambda d: (-size(d), d.container_id)):
        need, ports = _need(demand), demand.ports
        for option in weighed[demand.container_id]:
            left = room[option.target]
            if published[option.target] & ports:
                continue
            if all(n <= r for n, r in zip(need, left, strict=True)):
                room[option.target] = [r - n for r, n in zip(left, need, strict=True)]
                published[option.target] |= ports
                chosen.append(option)
                break
    return chosen


def _plan_of(
    demands: Sequence[Demand],
    chosen: list[Choice],
    weighed: dict[str, list[Choice]],
    excluded: dict[str, list[Exclusion]],
    method: Method,
    started: float,
) -> Plan:
    by_container = {c.container_id: c for c in chosen}
    choices: list[Choice] = []
    unplaced: list[Unplaced] = []
    for demand in demands:
        choice = by_container.get(demand.container_id)
        if choice is not None:
            choices.append(choice)
        elif weighed[demand.container_id]:
            unplaced.append(Unplaced(demand.container_id, "no_capacity"))
        else:
            unplaced.append(Unplaced(demand.container_id, "no_candidate"))
    elapsed_ms = (time.perf_counter() - started) * 1000
    return Plan(choices, unplaced, weighed, excluded, method, elapsed_ms)
