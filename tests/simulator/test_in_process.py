"""The in-memory transport drives the same engine as MQTT: same seed and updates, same weights, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np

from cloud.strategy import DpMode
from simulator.federation import run_federation, run_in_process


def test_mqtt_run_and_in_process_run_give_bit_identical_global_weights(broker, tiny_config, tiny_cloud, tmp_path):
    """Central DP on, so the server's noise (from the engine's SeedSequence) must match too."""
    config = dataclasses.replace(tiny_config, rounds=2, dp=DpMode.CENTRAL, noise_multiplier=0.3,
                                 insecure_seeded_noise=True)
    over_mqtt = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.3, fleet="bitexact")
    in_memory = run_in_process(config, tiny_cloud, 0.3, fleet="bitexact")
    assert sorted(over_mqtt.final_weights) == sorted(in_memory.state.weights)
    for name, w in over_mqtt.final_weights.items():
        assert w.dtype == in_memory.state.weights[name].dtype == np.float32
        assert w.tobytes() == in_memory.state.weights[name].tobytes(), name
    assert any(not np.array_equal(w, tiny_cloud.student_weights[n]) for n, w in over_mqtt.final_weights.items())
    assert [h["accepted"] for h in over_mqtt.history] == [list(r.accepted) for r in in_memory.records]
    assert over_mqtt.epsilon == in_memory.state.ledger.epsilon


def test_another_seed_gives_other_weights(tiny_config, tiny_cloud):
    """The seed reaches the devices' training: the bit-exact agreement above is not a constant."""
    a = run_in_process(dataclasses.replace(tiny_config, rounds=1), tiny_cloud, 0.0)
    b = run_in_process(dataclasses.replace(tiny_config, rounds=1, seed=tiny_config.seed + 1), tiny_cloud, 0.0)
    assert any(not np.array_equal(a.state.weights[n], b.state.weights[n]) for n in a.state.weights)


def test_devices_without_labels_train_on_nothing_the_hidden_labels_tell(tiny_config, tiny_cloud):
    """Meters hold no labels: scrambling the truth behind their (absent) labels must not change one bit."""
    from simulator.data import Dataset

    def unlabelled(scramble: bool):
        rng = np.random.default_rng(0)
        devices = [Dataset(d.x, rng.permutation(d.y) if scramble else d.y, np.zeros(len(d), bool))
                   for d in tiny_cloud.split.devices]
        return dataclasses.replace(tiny_cloud, split=dataclasses.replace(tiny_cloud.split, devices=devices))

    config = dataclasses.replace(tiny_config, rounds=1)
    a = run_in_process(config, unlabelled(False), 0.0).state.weights
    b = run_in_process(config, unlabelled(True), 0.0).state.weights
    labelled = run_in_process(config, tiny_cloud, 0.0).state.weights
    assert all(a[n].tobytes() == b[n].tobytes() for n in a)
    assert any(not np.array_equal(a[n], labelled[n]) for n in a)  # the labels do matter when held
