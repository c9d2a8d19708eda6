"""Peer selection without I/O: the filters, the cost, the exact and greedy assignments."""

import json
from types import SimpleNamespace
from typing import Any

import pytest

from edgecloud_contracts.heartbeat import NodePolicy
from edgecloud_migration_scheduler.placement import planner
from edgecloud_migration_scheduler.placement.planner import (
    Candidate,
    Demand,
    Exclusion,
    ExclusionReason,
    Policy,
    Unplaced,
    greedy,
    plan,
)

GIB = 1 << 30
NO_HEADROOM = Policy(headroom=0.0)


def demand(container_id: str = "c-1", **fields: Any) -> Demand:
    values: dict[str, Any] = {
        "container_id": container_id,
        "tenant_id": "t-alice",
        "source": "node_src",
        "arch": "x86_64",
        "cpus": 1.0,
        "memory": GIB,
        "disk": GIB,
    }
    return Demand(**(values | fields))


def node(key: str, **fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "key": key,
        "online": True,
        "arch": "x86_64",
        "tenants": frozenset({"t-alice"}),
        "cpu_free": 4.0,
        "memory_free": 4 * GIB,
        "disk_free": 4 * GIB,
        "level": 2,
        "rtt_ms": {"node_src": 10.0},
    }
    return Candidate(**(values | fields))


def targets(result: planner.Plan) -> dict[str, str]:
    return {c.container_id: c.target for c in result.choices}


@pytest.mark.parametrize(
    ("unfit", "reason"),
    [
        (node("node_src"), "is_source"),
        (node("node_bad", online=False), "offline"),
        (node("node_bad", tenants=frozenset({"t-bob"})), "not_granted"),
        (node("node_bad", arch="aarch64"), "arch_mismatch"),
        (node("node_bad", level=1), "level_too_low"),
        # 1 core free, but the headroom keeps 10% of it: 0.9 usable for a 1-core container.
        (node("node_bad", cpu_free=1.0), "cpu"),
        (node("node_bad", memory_free=GIB), "memory"),
        (node("node_bad", disk_free=GIB), "disk"),
        (node("node_bad", rtt_ms={"node_src": 150.0}), "latency"),
        (node("node_bad", rtt_ms={"node_other": 1.0}), "latency"),
    ],
)
def test_each_filter_names_its_reason(unfit: Candidate, reason: ExclusionReason) -> None:
    result = plan([demand()], [unfit, node("node_ok")])

    assert result.method == "single"
    assert targets(result) == {"c-1": "node_ok"}
    assert result.excluded["c-1"] == [Exclusion(unfit.key, reason)]


def test_only_compute_level_qualifies_by_default_but_the_policy_decides() -> None:
    storage_only = node("node_storage", level=1)

    assert plan([demand()], [storage_only]).unplaced == [Unplaced("c-1", "no_candidate")]
    assert targets(plan([demand()], [storage_only], Policy(min_level=1))) == {"c-1": "node_storage"}


@pytest.mark.parametrize(
    ("wanted", "offered"),
    [("amd64", "x86_64"), ("x86_64", "AMD64"), ("arm64", "aarch64"), (None, "armv7l")],
)
def test_architecture_names_that_mean_the_same_match(wanted: str | None, offered: str) -> None:
    result = plan([demand(arch=wanted)], [node("node_b", arch=offered)])

    assert targets(result) == {"c-1": "node_b"}


def test_an_unmeasured_round_trip_counts_only_when_the_policy_assumes_one() -> None:
    unmeasured = node("node_b", rtt_ms={})

    assert plan([demand()], [unmeasured]).excluded["c-1"] == [Exclusion("node_b", "latency")]
    assumed = plan([demand()], [unmeasured], Policy(unknown_rtt_ms=50.0))
    [choice] = assumed.choices
    assert (choice.target, choice.rtt_ms) == ("node_b", 50.0)
    assert choice.cost == pytest.approx(51.0 / 0.75)


def test_lower_latency_wins_at_equal_capacity() -> None:
    near, far = node("node_z", rtt_ms={"node_src": 5.0}), node("node_a", rtt_ms={"node_src": 40.0})

    result = plan([demand()], [far, near])

    assert targets(result) == {"c-1": "node_z"}
    assert [o.target for o in result.weighed["c-1"]] == ["node_z", "node_a"]


def test_more_remaining_capacity_wins_at_equal_latency() -> None:
    small, large = node("node_a", cpu_free=2.0), node("node_z", cpu_free=16.0)

    result = plan([demand()], [small, large])

    assert targets(result) == {"c-1": "node_z"}
    # Remaining CPU share: 1/2 on the small node, 15/16 on the large one (memory 3/4).
    assert [o.cost for o in result.weighed["c-1"]] == [
        pytest.approx(11.0 / 0.75),
        pytest.approx(11.0 / 0.5),
    ]


def test_a_zero_round_trip_still_ranks_by_capacity() -> None:
    small = node("node_a", cpu_free=2.0, rtt_ms={"node_src": 0.0})
    large = node("node_z", cpu_free=8.0, memory_free=16 * GIB, rtt_ms={"node_src": 0.0})

    result = plan([demand()], [small, large])

    assert targets(result) == {"c-1": "node_z"}
    assert all(o.cost > 0 for o in result.weighed["c-1"])


def test_equal_costs_go_by_key() -> None:
    result = plan([demand()], [node("node_c"), node("node_a"), node("node_b")])

    assert [o.target for o in result.weighed["c-1"]] == ["node_a", "node_b", "node_c"]
    assert targets(result) == {"c-1": "node_a"}


def test_one_container_never_calls_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_solver(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("milp called for a single container")

    monkeypatch.setattr(planner, "milp", no_solver)

    assert plan([demand()], [node("node_b")]).method == "single"


def exclusive_case() -> tuple[list[Demand], list[Candidate]]:
    """The big container could go to either node, the small one only to node_a, and
    node_a has room for one of them: largest-first greedy takes node_a for the big one."""
    big = demand("c-big", cpus=2.0, source="node_src")
    small = demand("c-small", cpus=1.0, source="node_far")
    shared = node("node_a", cpu_free=2.0, rtt_ms={"node_src": 5.0, "node_far": 5.0})
    only_big = node("node_b", cpu_free=2.0, rtt_ms={"node_src": 20.0})
    return [big, small], [shared, only_big]


def test_milp_places_both_where_greedy_strands_one() -> None:
    demands, candidates = exclusive_case()

    greedy_result = greedy(demands, candidates, NO_HEADROOM)
    exact = plan(demands, candidates, NO_HEADROOM)

    assert targets(greedy_result) == {"c-big": "node_a"}
    assert greedy_result.unplaced == [Unplaced("c-small", "no_capacity")]
    assert exact.method == "milp"
    assert targets(exact) == {"c-big": "node_b", "c-small": "node_a"}
    assert exact.unplaced == []


def test_milp_finds_the_cheaper_assignment_greedy_misses() -> None:
    """Largest first, the big container takes node_a by a hair and pushes the small one
    to a far node; moving the big one to node_b instead costs far less in total."""
    big = demand("c-big", cpus=2.0, source="node_src")
    small = demand("c-small", cpus=1.0, source="node_far")
    candidates = [
        node("node_a", cpu_free=2.5, rtt_ms={"node_src": 10.0, "node_far": 1.0}),
        node("node_b", cpu_free=2.5, rtt_ms={"node_src": 11.0}),
        node("node_c", cpu_free=3.0, rtt_ms={"node_far": 80.0}),
    ]

    greedy_result = greedy([big, small], candidates, NO_HEADROOM)
    exact = plan([big, small], candidates, NO_HEADROOM)

    assert targets(greedy_result) == {"c-big": "node_a", "c-small": "node_c"}
    assert targets(exact) == {"c-big": "node_b", "c-small": "node_a"}
    assert sum(c.cost for c in exact.choices) < sum(c.cost for c in greedy_result.choices)


def test_several_containers_stay_within_every_resource() -> None:
    demands = [demand(f"c-{i}", cpus=1.0, memory=GIB, disk=GIB) for i in range(5)]
    candidates = [
        node("node_a", cpu_free=2.0, memory_free=8 * GIB, rtt_ms={"node_src": 1.0}),
        node("node_b", cpu_free=8.0, memory_free=2 * GIB, rtt_ms={"node_src": 1.0}),
        node("node_c", cpu_free=8.0, memory_free=8 * GIB, disk_free=GIB, rtt_ms={"node_src": 90.0}),
    ]

    result = plan(demands, candidates, NO_HEADROOM)

    placed = list(targets(result).values())
    assert result.method == "milp"
    assert sorted(placed) == ["node_a", "node_a", "node_b", "node_b", "node_c"]


def test_containers_left_over_are_reported_with_why() -> None:
    demands = [demand(f"c-{i}") for i in range(3)] + [demand("c-arm", arch="aarch64")]

    result = plan(demands, [node("node_b", cpu_free=2.0)], NO_HEADROOM)

    assert len(result.choices) == 2
    assert {u.reason for u in result.unplaced} == {"no_capacity", "no_candidate"}
    assert Unplaced("c-arm", "no_candidate") in result.unplaced


def failing_milp(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("solver crashed")


def timed_out_milp(*args: Any, **kwargs: Any) -> Any:
    return SimpleNamespace(status=1, x=None, message="Time limit reached.")


@pytest.mark.parametrize("solver", [failing_milp, timed_out_milp])
def test_the_greedy_assignment_stands_in_when_milp_cannot_finish(
    monkeypatch: pytest.MonkeyPatch, solver: Any
) -> None:
    monkeypatch.setattr(planner, "milp", solver)
    demands, candidates = exclusive_case()

    result = plan(demands, candidates, NO_HEADROOM)

    assert result.method == "greedy"
    assert targets(result) == {"c-big": "node_a"}
    assert result.unplaced == [Unplaced("c-small", "no_capacity")]


def test_the_record_is_json_and_tells_what_was_weighed() -> None:
    demands = [demand("c-1"), demand("c-2", arch="aarch64")]
    candidates = [node("node_a"), node("node_b", online=False)]

    record = json.loads(json.dumps(plan(demands, candidates).as_record()))

    assert record["method"] == "milp"
    assert record["choices"] == [
        {
            "container": "c-1",
            "target": "node_a",
            "cost": pytest.approx(11 / 0.75, rel=1e-4),
            "rtt_ms": 10.0,
        }
    ]
    assert record["unplaced"] == [{"container": "c-2", "reason": "no_candidate"}]
    assert record["containers"]["c-1"]["excluded"] == [{"key": "node_b", "reason": "offline"}]
    assert record["containers"]["c-2"]["excluded"] == [
        {"key": "node_a", "reason": "arch_mismatch"},
        {"key": "node_b", "reason": "offline"},
    ]


def test_a_container_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan([demand("c-1"), demand("c-1")], [node("node_a")])


def test_a_policy_that_keeps_everything_is_refused() -> None:
    with pytest.raises(ValueError, match="headroom"):
        Policy(headroom=1.0)


PUBLISHES = frozenset({(30080, "tcp")})
RANGE = NodePolicy(pids_per_container=512, pids_total=4096, ports=(30000, 30099))
NO_RANGE = RANGE.model_copy(update={"ports": None})
LOW_RANGE = RANGE.model_copy(update={"ports": (1, 1024)})


@pytest.mark.parametrize(
    ("unfit", "reason"),
    [
        (node("node_bad"), "ports_not_allowed"),  # an agent that reports no policy
        (node("node_bad", policy=NO_RANGE), "ports_not_allowed"),
        (node("node_bad", policy=LOW_RANGE), "port_out_of_range"),
        (node("node_bad", policy=RANGE, ports_taken=PUBLISHES), "port_taken"),
    ],
)  # fmt: skip
def test_a_peer_must_publish_the_containers_ports(unfit: Candidate, reason: str) -> None:
    udp_taken = node("node_ok", policy=RANGE, ports_taken=frozenset({(30080, "udp")}))
    result = plan([demand(ports=PUBLISHES)], [unfit, udp_taken])
    assert targets(result) == {"c-1": "node_ok"}
    assert result.excluded["c-1"] == [Exclusion(unfit.key, reason)]  # type: ignore[arg-type]
    # A container publishing nothing goes anywhere.
    assert targets(plan([demand()], [unfit]))["c-1"] == "node_bad"


@pytest.mark.parametrize("assign", [plan, greedy])
def test_containers_moving_together_never_share_a_port_on_a_peer(assign: Any) -> None:
    # Both fit on the near peer by every resource, but only one may have its port there.
    near = node("node_near", policy=RANGE, rtt_ms={"node_src": 1.0}, cpu_free=16.0)
    far = node("node_far", policy=RANGE, rtt_ms={"node_src": 50.0})
    both = [demand("c-1", ports=PUBLISHES), demand("c-2", ports=PUBLISHES)]
    result = assign(both, [near, far])
    assert sorted(targets(result).values()) == ["node_far", "node_near"]
    assert result.method == ("milp" if assign is plan else "greedy")

    alone = assign(both, [near])
    assert len(alone.choices) == 1
    assert alone.unplaced == [
        Unplaced(next(iter({"c-1", "c-2"} - set(targets(alone)))), "no_capacity")
    ]
    # Other ports share a peer as before.
    apart = [demand("c-1", ports=PUBLISHES), demand("c-2", ports=frozenset({(30081, "tcp")}))]
    assert set(targets(assign(apart, [near])).values()) == {"node_near"}
