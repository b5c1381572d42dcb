"""A real fleet (LiteRT devices over mosquitto) with two aggregator workers ends on the single aggregator's bytes."""

from __future__ import annotations

import dataclasses

import numpy as np

from cloud.strategy import DpMode
from simulator.federation import run_federation, run_in_process


def test_fleet_with_two_aggregator_workers_ends_on_the_single_aggregators_weights(broker, tiny_config, tiny_cloud,
                                                                                  tmp_path):
    """Central DP, seeded: the in-memory run is the single aggregator's release bit for bit
    (tests/simulator/test_in_process.py), and the sharded one must equal it."""
    config = dataclasses.replace(tiny_config, rounds=2, dp=DpMode.CENTRAL, noise_multiplier=0.3,
                                 insecure_seeded_noise=True)
    sharded = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.3, fleet="sharded2",
                             aggregators=2)
    single = run_in_process(config, tiny_cloud, 0.3, fleet="sharded2")
    for name, w in sharded.final_weights.items():
        assert w.tobytes() == single.state.weights[name].tobytes(), name
    assert any(not np.array_equal(w, tiny_cloud.student_weights[n]) for n, w in sharded.final_weights.items())
    assert [h["accepted"] for h in sharded.history] == [list(r.accepted) for r in single.records]
    assert sharded.epsilon == single.state.ledger.epsilon
