"""Replica scaling decisions, as pure functions: no HTTP, no processes."""

from __future__ import annotations

from cortex.services.gateway.scaling import (
    Limits,
    Pressure,
    Replica,
    decide,
    held_since,
    pressure_of,
    resolve_range,
)

LIMITS = Limits(min=0, max=2, queue_depth=2, queue_wait_s=5.0, window_s=10.0, idle_s=60.0)
CALM = Pressure(0, 0.0)
BUSY = Pressure(3, 0.0)


def loaded(neuron="a", **kw) -> Replica:
    return Replica(neuron, "loaded", **{"scaled": True, **kw})


def test_pressure_counts_the_gateway_queue_and_what_waits_beyond_each_engines_concurrency():
    replicas = [
        loaded("a", in_flight=5, concurrency=2),  # 3 wait at the neuron
        loaded("b", in_flight=1, concurrency=2, neuron_queued=0),
        Replica("c", "loading", in_flight=0),
    ]
    assert pressure_of(replicas, gateway_queued=1, wait_s=0.0).depth == 4
    # The neuron's own count wins when it says more waits than the gateway can tell.
    assert pressure_of([loaded(in_flight=1, neuron_queued=2)], 0, 0.0).depth == 2


def test_pressure_is_over_on_depth_or_on_wait():
    assert Pressure(3, 0.0).over(LIMITS) == "queue_depth"
    assert Pressure(2, 0.0).over(LIMITS) is None  # at the threshold is not above it
    assert Pressure(0, 6.0).over(LIMITS) == "queue_wait"


def test_pressure_must_hold_for_the_whole_window_before_a_scale_up():
    since = held_since(None, True, now=100.0)
    assert since == 100.0
    assert held_since(since, True, now=105.0) == 100.0
    assert decide([loaded()], LIMITS, BUSY, since, now=109.9) is None
    intent = decide([loaded()], LIMITS, BUSY, since, now=110.0)
    assert intent is not None and (intent.direction, intent.reason) == ("up", "queue_depth")
    assert "queue depth 3 (threshold 2)" in intent.detail and "1 of max 2" in intent.detail
    # A break in the pressure starts the window again.
    assert held_since(since, False, now=106.0) is None


def test_no_scale_up_at_max_or_while_a_replica_is_loading():
    two = [loaded("a"), loaded("b")]
    assert decide(two, LIMITS, BUSY, 0.0, now=100.0) is None
    assert decide([loaded("a"), Replica("b", "loading")], LIMITS, BUSY, 0.0, now=100.0) is None


def test_below_min_loads_one_at_a_time_without_pressure():
    limits = Limits(2, 3, 2, 5.0, 10.0, 60.0)
    intent = decide([], limits, CALM, None, now=0.0)
    assert intent is not None and (intent.direction, intent.reason) == ("up", "min")
    assert decide([Replica("a", "loading")], limits, CALM, None, now=0.0) is None


def test_the_longest_idle_extra_replica_goes_after_the_idle_window():
    replicas = [loaded("a", idle_s=5.0), loaded("b", idle_s=61.0)]
    intent = decide(replicas, LIMITS, CALM, None, now=0.0)
    assert intent is not None and (intent.direction, intent.reason, intent.replica) == (
        "down",
        "idle",
        "b",
    )
    assert (
        decide([loaded("a", idle_s=5.0), loaded("b", idle_s=59.0)], LIMITS, CALM, None, 0.0) is None
    )


def test_scale_down_stops_at_min_and_never_takes_a_busy_replica():
    limits = Limits(2, 3, 2, 5.0, 10.0, 60.0)
    assert decide([loaded("a", idle_s=99), loaded("b", idle_s=99)], limits, CALM, None, 0.0) is None
    busy = [loaded("a", idle_s=99, busy=True), loaded("b", busy=True)]
    assert decide(busy, LIMITS, CALM, None, 0.0) is None
    # The last replica of a min-0 model is idle TTL's business, not scaling's.
    assert decide([loaded("a", idle_s=999)], LIMITS, CALM, None, 0.0) is None


def test_placements_loaded_on_demand_or_by_hand_are_not_scaled_down():
    replicas = [loaded("a", idle_s=999, scaled=False), loaded("b", idle_s=999, scaled=False)]
    limits = Limits(0, 1, 2, 5.0, 10.0, 60.0)
    assert decide(replicas, limits, CALM, None, 0.0) is None
    mixed = [loaded("a", idle_s=999, scaled=False), loaded("b", idle_s=70)]
    intent = decide(mixed, LIMITS, CALM, None, 0.0)
    assert intent is not None and intent.replica == "b"


def test_no_scale_down_while_the_new_replica_is_still_loading():
    replicas = [loaded("a", idle_s=999), Replica("b", "loading")]
    assert decide(replicas, LIMITS, CALM, None, 0.0) is None


def test_no_idle_scale_down_under_pressure_but_over_max_goes_at_once():
    replicas = [loaded("a", idle_s=99), loaded("b", idle_s=99, in_flight=4, busy=True)]
    assert decide(replicas, LIMITS, BUSY, 0.0, 5.0) is None
    three = [loaded("a"), loaded("b", idle_s=3.0), loaded("c", busy=True)]
    intent = decide(three, LIMITS, CALM, None, 0.0)
    assert intent is not None and (intent.reason, intent.replica) == ("over_max", "b")


def test_range_from_the_api_then_models_toml_then_the_default():
    assert resolve_range((0, 1), None, None) == (0, 1, "default")
    assert resolve_range((0, 1), (1, 3), None) == (1, 3, "config")
    assert resolve_range((0, 1), (1, 3), (2, 2)) == (2, 2, "api")
    # One bound given: the other is the default, moved so that min <= max.
    assert resolve_range((0, 1), (2, None), None) == (2, 2, "config")
    assert resolve_range((1, 4), (None, 2), None) == (1, 2, "config")
    assert resolve_range((3, 4), (None, 2), None) == (2, 2, "config")
