"""Eviction and placement decisions, as pure functions: no HTTP, no processes."""

from __future__ import annotations

from cortex.services.gateway.estimate import GiB, MiB
from cortex.services.gateway.policy import (
    DeviceRoom,
    NeuronRoom,
    Plan,
    Resident,
    Unplaceable,
    choose_evictions,
    eviction_order,
    plan_placement,
)


def resident(model, memory=1 * GiB, *, last_used=0.0, neuron="a", device="cpu", **kw) -> Resident:
    return Resident(model, neuron, device, memory, last_used=last_used, **kw)


def room(capacity, *residents, device="cpu") -> DeviceRoom:
    return DeviceRoom(device, capacity, tuple(residents))


def neuron(name, *devices, up=True, has_model=True, allowed=True) -> NeuronRoom:
    return NeuronRoom(name, up, has_model, allowed, tuple(devices))


# --------------------------------------------------------------------------- eviction


def test_lru_evicts_least_recently_used_first():
    old, mid, new = (
        resident("old", last_used=1),
        resident("mid", last_used=2),
        resident("new", last_used=3),
    )
    order = eviction_order([new, old, mid], "lru")
    assert [r.model for r in order] == ["old", "mid", "new"]


def test_priority_evicts_lowest_priority_first_then_lru():
    a = resident("a", last_used=1, priority=5)
    b = resident("b", last_used=3, priority=0)
    c = resident("c", last_used=2, priority=0)
    assert [r.model for r in eviction_order([a, b, c], "priority")] == ["c", "b", "a"]


def test_pinned_busy_and_loading_models_are_never_evicted():
    residents = [
        resident("pinned", last_used=0, pinned=True),
        resident("busy", last_used=1, busy=True),
        resident("loading", last_used=2, state="loading"),
        resident("unloading", last_used=3, state="unloading"),
        resident("idle", last_used=4),
    ]
    assert [r.model for r in eviction_order(residents, "lru")] == ["idle"]


def test_choose_evictions_takes_the_shortest_lru_prefix_that_frees_enough():
    residents = [
        resident("a", 1 * GiB, last_used=1),
        resident("b", 1 * GiB, last_used=2),
        resident("c", 1 * GiB, last_used=3),
    ]
    assert choose_evictions(1 * GiB, 2 * GiB, residents, "lru") == []
    chosen = choose_evictions(3 * GiB, 1 * GiB, residents, "lru")
    assert [r.model for r in chosen] == ["a", "b"]


def test_choose_evictions_is_none_when_even_evicting_everything_is_not_enough():
    residents = [resident("a", 1 * GiB), resident("p", 4 * GiB, pinned=True)]
    assert choose_evictions(3 * GiB, 1 * GiB, residents, "lru") is None


# --------------------------------------------------------------------------- placement


def test_a_model_that_fits_goes_where_most_room_is_left():
    rooms = [neuron("a", room(4 * GiB)), neuron("b", room(8 * GiB))]
    plan = plan_placement("m", 2 * GiB, rooms, "lru")
    assert isinstance(plan, Plan)
    assert (plan.neuron, plan.device, plan.evict) == ("b", "cpu", ())
    assert plan.free_after == 6 * GiB


def test_a_fit_without_eviction_wins_over_a_roomier_neuron_that_must_evict():
    full = room(16 * GiB, resident("big", 15 * GiB))
    rooms = [neuron("a", room(3 * GiB)), neuron("b", full)]
    plan = plan_placement("m", 2 * GiB, rooms, "lru")
    assert isinstance(plan, Plan) and plan.neuron == "a" and plan.evict == ()


def test_eviction_picks_the_lru_model_and_the_plan_that_evicts_least():
    a = room(4 * GiB, resident("a1", 2 * GiB, last_used=5), resident("a2", 2 * GiB, last_used=1))
    b = room(4 * GiB, resident("b1", 3 * GiB, last_used=0, neuron="b"))
    plan = plan_placement("m", 2 * GiB, [neuron("a", a), neuron("b", b)], "lru")
    assert isinstance(plan, Plan)
    assert plan.neuron == "a"
    assert [r.model for r in plan.evict] == ["a2"]


def test_a_pinned_model_survives_and_the_other_idle_one_goes():
    rooms = [
        neuron(
            "a",
            room(
                2 * GiB,
                resident("pinned", 1 * GiB, last_used=0, pinned=True),
                resident("other", 1 * GiB, last_used=9),
            ),
        )
    ]
    plan = plan_placement("m", 1 * GiB, rooms, "lru")
    assert isinstance(plan, Plan)
    assert [r.model for r in plan.evict] == ["other"]


def test_model_that_fits_only_after_busy_models_finish_waits():
    rooms = [neuron("a", room(2 * GiB, resident("busy", 2 * GiB, busy=True)))]
    decision = plan_placement("m", 1 * GiB, rooms, "lru")
    assert isinstance(decision, Unplaceable)
    assert decision.wait and decision.reason == "busy" and decision.blockers == ("busy",)


def test_model_too_big_even_after_eviction_says_how_much_it_needs_and_can_get():
    rooms = [
        neuron(
            "a",
            room(4 * GiB, resident("pinned", 3 * GiB, pinned=True), resident("idle", 512 * MiB)),
        )
    ]
    decision = plan_placement("huge", 2 * GiB, rooms, "lru")
    assert isinstance(decision, Unplaceable)
    assert decision.reason == "memory" and not decision.wait
    assert "needs about 2.0 GiB" in decision.message
    assert "1.0 GiB can be freed on a (cpu)" in decision.message
    assert "pinned there: pinned" in decision.message


def test_no_neuron_has_the_model():
    decision = plan_placement("m", 1, [neuron("a", room(GiB), has_model=False)], "lru")
    assert isinstance(decision, Unplaceable) and decision.reason == "no_neuron"
    assert "No neuron has model 'm'" in decision.message


def test_every_neuron_with_the_model_is_down():
    rooms = [neuron("a", room(GiB), up=False), neuron("b", room(GiB), has_model=False)]
    decision = plan_placement("m", 1, rooms, "lru")
    assert isinstance(decision, Unplaceable) and decision.reason == "all_down"
    assert "(a)" in decision.message


def test_affinity_excludes_neurons_the_profile_does_not_allow():
    rooms = [neuron("a", room(8 * GiB), allowed=False), neuron("b", room(2 * GiB))]
    plan = plan_placement("m", 1 * GiB, rooms, "lru")
    assert isinstance(plan, Plan) and plan.neuron == "b"
    only = plan_placement("m", 1 * GiB, [rooms[0]], "lru")
    assert isinstance(only, Unplaceable) and only.reason == "not_allowed"


def test_device_restriction_and_per_neuron_needs():
    gpu = neuron("g", room(24 * GiB, device="cuda:0"), room(24 * GiB, device="cuda:1"))
    plan = plan_placement("m", {"g": 10 * GiB}, [gpu], "lru", devices=["cuda:1"])
    assert isinstance(plan, Plan) and plan.device == "cuda:1" and plan.need == 10 * GiB


def test_physical_free_memory_bounds_a_gpu_below_its_budget():
    gpu = DeviceRoom("cuda:0", 20 * GiB, (), physical_free=3 * GiB)
    decision = plan_placement("m", 4 * GiB, [neuron("g", gpu)], "lru")
    assert isinstance(decision, Unplaceable) and decision.reason == "memory"
