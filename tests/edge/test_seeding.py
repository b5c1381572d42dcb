"""Seeding: the fleet's tree of SeedSequences, per party and round, and the simulator's named side streams."""

from __future__ import annotations

import numpy as np
import pytest

from edge.seeding import FleetSeeds, round_generator, side_stream, spawned_child


def test_spawned_child_is_what_seedsequence_spawn_gives() -> None:
    root = np.random.SeedSequence(123)
    children = np.random.SeedSequence(123).spawn(4)
    for i, child in enumerate(children):
        mine = spawned_child(root, i)
        assert mine.spawn_key == child.spawn_key
        assert np.array_equal(mine.generate_state(4), child.generate_state(4))
    assert root.n_children_spawned == 0  # the parent is not advanced


def test_fleet_seeds_give_every_party_its_own_stream_per_round() -> None:
    seeds = FleetSeeds.from_seed(5, 3)
    draws = {(p, r): round_generator(s, r).integers(0, 2**63)
             for p, s in enumerate((seeds.server, *seeds.devices)) for r in range(3)}
    assert len(set(draws.values())) == len(draws)
    again = FleetSeeds.from_seed(5, 3)
    assert round_generator(again.devices[1], 2).integers(0, 2**63) == draws[(2, 2)]


def test_side_streams_are_disjoint_from_every_party_of_the_fleet() -> None:
    seeds = FleetSeeds.from_seed(0, 4)
    fleet = {tuple(s.generate_state(4)) for s in (seeds.server, *seeds.devices)}
    fleet |= {tuple(spawned_child(s, r).generate_state(4)) for s in (seeds.server, *seeds.devices) for r in range(3)}
    sides = {tuple(side_stream(0, p).generate_state(4)) for p in ("cloud-students", "central-student", "device-shift")}
    assert len(sides) == 3
    assert not sides & fleet


def test_side_stream_depends_on_seed_and_purpose_and_nothing_else() -> None:
    a = side_stream(7, "device-shift").generate_state(4)
    assert np.array_equal(a, side_stream(7, "device-shift").generate_state(4))
    assert not np.array_equal(a, side_stream(8, "device-shift").generate_state(4))
    with pytest.raises(ValueError, match="purpose"):
        side_stream(7, "")
