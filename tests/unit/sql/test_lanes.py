"""The turns of fair dispatch on the SQL providers: who gets how many jobs in one claim."""

from __future__ import annotations

from typing import Any

from jobwire.gateway.providers.sql._lanes import allocate, in_turns


def weights(**by_key: int) -> Any:
    return lambda key: by_key.get(key, 1)


def test_keys_take_turns_one_job_each_until_the_room_is_used() -> None:
    left = {"a": 100, "b": 100, "c": 100}
    assert allocate(["a", "b", "c"], left, weights(), 5) == [
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("a", 1),
        ("b", 1),
    ]


def test_a_weight_is_the_length_of_a_keys_turn() -> None:
    left = {"big": 100, "small": 100}
    visits = allocate(["big", "small"], left, weights(big=3), 8)
    assert visits == [("big", 3), ("small", 1), ("big", 3), ("small", 1)]


def test_a_key_gets_no_more_than_its_free_slots() -> None:
    left = {"a": 1, "b": 0, "c": 5}
    assert allocate(["a", "b", "c"], left, weights(), 10) == [
        ("a", 1),
        ("c", 1),
        ("c", 1),
        ("c", 1),
        ("c", 1),
        ("c", 1),
    ]


def test_a_turn_an_earlier_claim_began_goes_on_with_what_is_left_of_it() -> None:
    left = {"big": 100, "small": 100}
    visits = allocate(["big", "small"], left, weights(big=3), 4, first={"big": 1})
    assert visits == [("big", 1), ("small", 1), ("big", 2)]


def test_nothing_is_given_without_room_or_lanes() -> None:
    assert allocate(["a"], {"a": 5}, weights(), 0) == []
    assert allocate([], {}, weights(), 5) == []


def row(seq: int, key: str, priority: int = 5) -> dict[str, Any]:
    return {"seq": seq, "concurrency_key": key, "priority": priority, "run_at": 0.0}


def test_claimed_rows_are_delivered_lane_by_lane_as_the_turns_went() -> None:
    rows = [row(1, "a"), row(2, "a"), row(3, "b"), row(4, "a", priority=9)]
    ordered = in_turns(rows, [("a", 1), ("b", 1), ("a", 2)])
    # Within a key: the highest priority first, then the oldest.
    assert [r["seq"] for r in ordered] == [4, 3, 1, 2]
