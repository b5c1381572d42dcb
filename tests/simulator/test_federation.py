"""Whole federated runs over the real broker fixture: devices and aggregator as MQTT clients."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from cloud.evaluation import student_evaluator
from edge.model_step import quantised_step
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.signed_artifact import generate_signing_key, sign
from edge.topics import FleetTopics
from edge.wire import (
    ModelStepMeta,
    UpdateMeta,
    WeightsMeta,
    encode_model_step,
    encode_update,
    encode_weights,
    training_digest,
)
from simulator.federation import run_federation


def test_global_student_changes_and_improves_over_rounds(broker, tiny_config, tiny_cloud, tmp_path):
    evaluate = student_evaluator(tiny_cloud.student_program, tiny_cloud.split.test.x, tiny_cloud.split.test.y)
    before = evaluate(tiny_cloud.student_weights)["accuracy"]
    out = run_federation(tiny_config, tiny_cloud, broker.host, broker.port, tmp_path, 0.0, fleet="improves")
    assert len(out.history) == tiny_config.rounds
    assert all(len(h["accepted"]) == tiny_config.devices for h in out.history)
    changed = [not np.array_equal(out.final_weights[k], v) for k, v in tiny_cloud.student_weights.items()]
    assert all(changed)
    accs = [h["accuracy"] for h in out.history]
    assert accs[-1] > before + 0.2
    assert accs[-1] >= accs[0]
    for recs in out.device_traffic.values():
        assert sum(r.nbytes for r in recs if r.direction == "up" and "/update/" in r.topic) > 0


def test_malformed_updates_are_rejected_while_round_completes(broker, tiny_config, tiny_cloud, tmp_path):
    fleet = "rogue"
    topics = FleetTopics(fleet)
    template = tiny_cloud.student_weights
    good = {k: np.zeros_like(v) for k, v in template.items()}
    nan = {k: np.full_like(v, np.nan) for k, v in template.items()}
    wrong_shape = dict(good, **{next(iter(good)): np.zeros((2, 2), np.float32)})
    # declared as planned: each case breaks one thing
    meta = UpdateMeta(fleet, "intruder", 0, 0, 10, 1.0, 0.0, "none",
                      training=training_digest(tiny_config.training.declaration()))
    rogue = MqttSession("rogue-client", broker.host, broker.port)
    sent = threading.Event()

    known = [a.device_id for a in tiny_cloud.assignments]
    attacks = [  # encoded up front, so they leave the moment round 0 opens, before any device has trained
        (topics.update(0, "intruder"), encode_update(good, meta)),
        (topics.update(0, known[0]), encode_update(nan, dataclasses.replace(meta, device=known[0]))),
        (topics.update(0, known[1]), encode_update(wrong_shape, dataclasses.replace(meta, device=known[1]))),
        (topics.update(0, known[2]), encode_update(good, dataclasses.replace(meta, device=known[2]))[:40]),
    ]

    def attack(topic: str, payload: bytes) -> None:
        if not sent.is_set():  # round 0's first notice: the round is open (its model went out at the set-up)
            sent.set()
            for attack_topic, blob in attacks:
                rogue.publish(attack_topic, blob, wait=False)

    rogue.subscribe(topics.cohort(known[0]), attack)
    rogue.connect()
    try:
        # float32 updates: each case breaks one thing, none of them the encoding
        out = run_federation(dataclasses.replace(tiny_config, rounds=1, update_bits=32), tiny_cloud, broker.host,
                             broker.port, tmp_path, 0.0, fleet=fleet)
    finally:
        rogue.close()
    assert sent.is_set()
    first = out.history[0]
    assert len(first["accepted"]) == tiny_config.devices
    reasons = " | ".join(detail for _, _, detail in first["rejected"]["sample"])
    assert first["rejected"]["counts"] == {"not_in_cohort": 1, "malformed_payload": 2, "wrong_shape": 1}
    assert "unknown device 'intruder'" in reasons
    assert "NaN or infinity" in reasons
    assert "has shape (2, 2)" in reasons
    assert "truncated" in reasons


def test_aggregator_resumes_from_checkpoint_after_a_stop(broker, tiny_config, tiny_cloud, tmp_path):
    first = run_federation(dataclasses.replace(tiny_config, rounds=1), tiny_cloud, broker.host, broker.port,
                           tmp_path, 0.0, fleet="resume")
    second = run_federation(dataclasses.replace(tiny_config, rounds=2), tiny_cloud, broker.host, broker.port,
                            tmp_path, 0.0, fleet="resume")
    assert [h["round"] for h in second.history] == [0, 1]
    assert second.history[0] == first.history[0]
    assert not all(np.array_equal(second.final_weights[k], first.final_weights[k]) for k in first.final_weights)


def test_central_dp_run_reports_the_accountants_epsilon(broker, tiny_config, tiny_cloud, tmp_path):
    from cloud.accounting import compute_epsilon
    from cloud.strategy import DpMode
    from edge.privacy import DiscreteGaussianMechanism

    config = dataclasses.replace(tiny_config, rounds=2, dp=DpMode.CENTRAL, noise_multiplier=1.5, target_epsilon=None)
    out = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 1.5, fleet="central")
    dimension = sum(w.size for w in tiny_cloud.student_weights.values())
    z = DiscreteGaussianMechanism(1.0, 1.5, dimension).effective_noise_multiplier  # what the ledger accounts
    assert len(out.history) == 2 and z < 1.5
    assert out.epsilon == compute_epsilon(z, 1.0, 2, config.delta)
    assert [h["epsilon"] for h in out.history] == [compute_epsilon(z, 1.0, r, config.delta) for r in (1, 2)]


def test_aggregator_refuses_rounds_beyond_the_epsilon_budget(broker, tiny_config, tiny_cloud, tmp_path):
    from cloud.accounting import compute_epsilon
    from cloud.strategy import DpMode

    z = 1.5
    budget = (compute_epsilon(z, 1.0, 1, 1e-5) + compute_epsilon(z, 1.0, 2, 1e-5)) / 2  # room for 1 round only
    config = dataclasses.replace(tiny_config, rounds=3, dp=DpMode.LOCAL, noise_multiplier=z, target_epsilon=budget)
    out = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, z, fleet="budget")
    assert len(out.history) == 1
    assert out.epsilon <= budget


def test_local_dp_noise_over_the_broker_cannot_be_regenerated_from_the_seed(broker, tiny_config, tiny_cloud,
                                                                            tmp_path):
    """An attacker who knows the run's seed replays it: with the default (secure) noise the same seed gives
    other releases; only --insecure-seeded-noise makes them repeat (and so subtractable)."""
    from cloud.strategy import DpMode

    config = dataclasses.replace(tiny_config, rounds=1, dp=DpMode.LOCAL, noise_multiplier=1.0, target_epsilon=None)
    runs = [run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path / f"s{i}", 1.0, fleet=f"sec{i}")
            for i in range(2)]
    assert any(not np.array_equal(runs[0].final_weights[k], runs[1].final_weights[k]) for k in runs[0].final_weights)
    seeded = dataclasses.replace(config, insecure_seeded_noise=True)
    replays = [run_federation(seeded, tiny_cloud, broker.host, broker.port, tmp_path / f"i{i}", 1.0, fleet=f"ins{i}")
               for i in range(2)]
    assert all(replays[0].final_weights[k].tobytes() == replays[1].final_weights[k].tobytes()
               for k in replays[0].final_weights)


@pytest.mark.parametrize("model_bits", [32, 8])
def test_devices_refuse_unsigned_forged_and_replayed_artefacts_and_the_fleet_still_completes(
        broker, tiny_config, tiny_cloud, tmp_path, model_bits):
    """A stranger on the broker (no ACL here: the worst case) publishes what the fleet must not act on, on the
    topic devices download the model from (the whole model at 32 bits, its step at 8): an unsigned retained
    model of version 9999 (the issue-10 attack that stopped every device), one signed with its own key, a plan
    signed with its own key, and, in round 2, the genuine version-1 model (or step) replayed."""
    fleet = f"forge{model_bits}"
    topics = FleetTopics(fleet)
    def download(version: int) -> str:  # 8 bits: every version's step on the one retained step topic
        return topics.model(version) if model_bits == 32 else topics.model_step

    known = [a.device_id for a in tiny_cloud.assignments]
    stranger = generate_signing_key()
    sevens = {k: np.full_like(v, 7.0) for k, v in tiny_cloud.student_weights.items()}
    if model_bits == 32:
        poison = encode_weights(sevens, WeightsMeta(fleet, 9999, 0))
    else:
        wire, _ = quantised_step(tiny_cloud.student_weights, sevens, 8, np.random.default_rng(0))
        poison = encode_model_step(wire, ModelStepMeta(fleet, 9999, 0, 9998))
    forged_plan = DevicePlan(fleet, known[0], "none", "0" * 16, "0" * 16, 1, "none").to_json()
    rogue = MqttSession("forger", broker.host, broker.port)
    captured: dict[str, bytes] = {}

    mine: list[bytes] = []  # what the stranger itself published (it hears its own messages on the step topic)
    genuine: list[bytes] = []  # the fleet's downloads after version 0, in order: version 1, 2, ...

    def attack(topic: str, envelope: bytes) -> None:
        if topic == topics.model(0) and "first" not in captured:
            captured["first"] = b"yes"
            mine.extend([poison, sign(stranger, download(9998), 9998, poison)])
            rogue.publish(download(9999), mine[0], retain=True, wait=False)
            rogue.publish(download(9998), mine[1], retain=True, wait=False)
            rogue.publish(topics.plan(known[0]), sign(stranger, topics.plan(known[0]), 2**62, forged_plan),
                          wait=False)
            return
        if envelope in mine or topic not in (download(1), download(2)) or (model_bits == 32 and topic == download(0)):
            return
        genuine.append(envelope)
        if len(genuine) == 1:
            captured["version 1"] = envelope
        elif len(genuine) == 2 and "replayed" not in captured:
            captured["replayed"] = b"yes"
            rogue.publish(download(1), captured["version 1"], wait=False)

    rogue.subscribe(topics.all_models, attack)
    rogue.subscribe(topics.model_step, attack)
    rogue.connect()
    try:
        out = run_federation(dataclasses.replace(tiny_config, model_bits=model_bits), tiny_cloud, broker.host,
                             broker.port, tmp_path, 0.0, fleet=fleet)
    finally:
        for t in (download(9999), download(9998)):
            rogue.clear_retained(t, 1)
        rogue.close()
    assert "replayed" in captured
    assert [len(h["accepted"]) for h in out.history] == [tiny_config.devices] * tiny_config.rounds
    for device in known:
        def refused_on(topic: str, device: str = device) -> str:  # every reason given on the topic
            return " | ".join(reason for t, reason in out.device_refusals[device] if t == topic)

        assert "unsigned message" in refused_on(download(9999))
        assert "signature does not verify" in refused_on(download(9998))
        assert "counter 1 is older than the 2 already held" in refused_on(download(1))
    assert "signature does not verify" in dict(out.device_refusals[known[0]])[topics.plan(known[0])]


def test_a_sampled_fleet_trains_only_the_cohort_each_round_over_the_broker(broker, tiny_config, tiny_cloud, tmp_path):
    config = dataclasses.replace(tiny_config, rounds=4, sampling_rate=0.5, deadline_s=20.0,
                                 insecure_seeded_noise=True)  # seeded: the same cohorts on every test run
    out = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.0, fleet="sampled")
    cohorts = [tuple(h["cohort"]) for h in out.history]
    assert any(0 < len(c) < config.devices for c in cohorts), cohorts  # really a sample, for this seed
    for h in out.history:
        assert h["accepted"] == h["cohort"] and h["rejected"]["total"] == 0
    for device, records in out.device_traffic.items():
        sent = {int(r.topic.split("/")[-3]) for r in records if r.direction == "up" and "/update/" in r.topic}
        assert sent == {h["round"] for h in out.history if device in h["cohort"]}


@pytest.mark.parametrize("bits", [8, 2])
def test_a_fleet_federates_on_quantised_updates_at_a_quarter_of_the_bytes_or_less(bits, broker, tiny_config, tiny_cloud,
                                                                                   tmp_path):
    config = dataclasses.replace(tiny_config, rounds=2, update_bits=bits)
    out = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.0, fleet=f"sq{bits}")
    assert [len(h["accepted"]) for h in out.history] == [config.devices] * config.rounds
    params = sum(v.size for v in tiny_cloud.student_weights.values())
    for records in out.device_traffic.values():
        up = sum(r.nbytes for r in records if r.direction == "up" and "/update/" in r.topic) / config.rounds
        assert params * bits / 8 < up < params * bits / 8 + 1000  # the codes, plus a bounded header


def test_batched_device_accuracy_equals_the_mean_of_each_devices_own(tiny_cloud):
    from edge.student_runtime import TrainableStudent

    holdouts = [(h.x, h.y) for h in tiny_cloud.split.device_holdout]
    got = student_evaluator(tiny_cloud.student_program, tiny_cloud.split.test.x, tiny_cloud.split.test.y,
                            holdouts)(tiny_cloud.student_weights)["device_accuracy"]
    student = TrainableStudent.from_bytes(tiny_cloud.student_program)
    student.set_weights(tiny_cloud.student_weights)
    want = np.mean([student.accuracy(np.asarray(x, np.float32).reshape(len(x), -1), y) for x, y in holdouts if len(y)])
    assert got == pytest.approx(want, abs=1e-12)
