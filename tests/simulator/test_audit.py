"""The privacy audit (simulator.audit, `python -m simulator audit`): the epsilon lower bound on known counts,
the membership attack on the real student program, the canary audit over the real aggregate, mechanism and
accountant (below the accountant with noise the attacker cannot regenerate, above it when the noise is
seeded publicly), and the CLI's report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import beta

from cloud.accounting import calibrate_discrete_noise_multiplier
from cloud.strategy import DpMode, FedAvgConfig
from edge.student_runtime import TrainableStudent
from simulator.__main__ import main
from simulator.artifacts import prepare_cloud
from simulator.audit import (
    CanarySetup,
    NoiseOrigin,
    canary_update,
    clopper_pearson_upper,
    epsilon_lower_bound,
    membership_inference,
    per_sample_loss,
    perfect_separation_bound,
    run_canary_audit,
    trials_to_show,
)
from simulator.audit_command import attack_sets, fleet_members, honest_updates, losses_of
from simulator.config import ExperimentConfig

from ..cli_helpers import call, one_error_line

DELTA = 1e-5


@pytest.fixture(scope="module")
def small_config() -> ExperimentConfig:
    """Three meters without labels, the default warm start; a teacher of 2 epochs is enough for an audit."""
    return ExperimentConfig(devices=3, rounds=2, seed=0, teacher_epochs=2)


@pytest.fixture(scope="module")
def small_cloud(small_config):
    return prepare_cloud(small_config)


def test_clopper_pearson_upper_bounds_have_their_closed_forms_at_the_ends():
    assert clopper_pearson_upper(0, 200) == pytest.approx(1 - 0.025 ** (1 / 200))
    assert clopper_pearson_upper(200, 200) == 1.0
    assert clopper_pearson_upper(7, 100) == pytest.approx(beta.ppf(0.975, 8, 93))


def test_perfect_separation_gives_the_closed_form_bound():
    bound = epsilon_lower_bound(np.ones(500), np.zeros(500), DELTA)
    p = 1 - 0.025 ** (1 / 500)  # Clopper-Pearson upper bound of a rate with 0 errors in 500 trials
    assert bound.epsilon == pytest.approx(math.log((1 - DELTA - p) / p))
    assert (bound.false_positives, bound.false_negatives) == (0, 0)
    assert bound.epsilon == pytest.approx(perfect_separation_bound(500, 500, DELTA))
    assert perfect_separation_bound(2000, 2000, DELTA) > bound.epsilon  # the ceiling rises with the trials


def test_known_counts_give_the_bound_of_their_best_threshold():
    with_canary = np.r_[np.zeros(10), np.ones(90)]  # 10 false negatives at threshold 0
    without = np.r_[np.zeros(95), np.ones(5)]  # 5 false positives at threshold 0
    bound = epsilon_lower_bound(with_canary, without, DELTA)
    fpr, fnr = beta.ppf(0.975, 6, 95), beta.ppf(0.975, 11, 90)
    assert (bound.threshold, bound.false_positives, bound.false_negatives) == (0.0, 5, 10)
    assert bound.epsilon == pytest.approx(max(math.log((1 - DELTA - fpr) / fnr), math.log((1 - DELTA - fnr) / fpr)))


def test_no_separation_gives_no_bound():
    rng = np.random.default_rng(0)
    assert epsilon_lower_bound(np.zeros(300), np.zeros(300), DELTA).epsilon == 0.0
    same = epsilon_lower_bound(rng.normal(size=1000), rng.normal(size=1000), DELTA)
    assert same.epsilon < 0.05


def test_trials_to_show_is_the_fewest_whose_perfect_separation_beats_epsilon():
    n = trials_to_show(2.15, DELTA)
    assert perfect_separation_bound(n // 2, n // 2, DELTA) > 2.15 >= perfect_separation_bound(n // 2 - 1, n // 2 - 1,
                                                                                              DELTA)


def test_per_sample_loss_is_the_cross_entropy():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    expected = [-math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1))), math.log(3)]
    assert per_sample_loss(logits, np.array([0, 2])) == pytest.approx(expected)


def test_membership_attack_is_at_chance_on_a_student_that_never_saw_the_members_and_not_on_one_that_did(small_cloud):
    """Control and positive control on the real LiteRT program: the cloud-distilled student never saw the
    devices' data (AUC ~ 0.5); a fresh student trained on 64 of the members alone tells them apart."""
    student = TrainableStudent.from_bytes(small_cloud.student_program)
    members, non_members = attack_sets(small_cloud, seed=0)
    assert len(members) == len(non_members) > 300
    unseen = membership_inference(losses_of(student, small_cloud.start_weights, members),
                                  losses_of(student, small_cloud.start_weights, non_members))
    assert abs(unseen.auc - 0.5) < 0.05 and unseen.chance_precision == 0.5
    seen, unseen_64 = members.take(np.arange(64)), non_members.take(np.arange(64))
    student.set_weights(small_cloud.student_weights)  # the fresh initialisation
    onehot = np.eye(student.num_classes, dtype=np.float32)[seen.y]
    student.fit(seen.x.reshape(64, -1), onehot, np.zeros_like(onehot), epochs=50, rng=np.random.default_rng(0),
                alpha=1.0, tau=1.0, lr=0.1)
    overfit = student.get_weights()
    trained = membership_inference(losses_of(student, overfit, seen), losses_of(student, overfit, unseen_64))
    assert trained.auc > 0.65
    assert trained.precision_at_recall[0.05] > 0.75


@pytest.fixture(scope="module")
def canary_setups(small_cloud, small_config) -> dict[DpMode, CanarySetup]:
    """One round of the small fleet in central and local mode at the z a 10-round run at epsilon 8 uses."""
    student = TrainableStudent.from_bytes(small_cloud.student_program)
    honest = honest_updates(small_cloud, small_config, fleet_members(small_cloud), student)
    canary = canary_update(small_cloud.start_weights, 1.0, np.random.default_rng(1))
    z = calibrate_discrete_noise_multiplier(8.0, 1.0, 10, DELTA)
    return {m: CanarySetup(FedAvgConfig(m, 1.0, z), small_cloud.start_weights, honest, canary, public_seed=0)
            for m in (DpMode.CENTRAL, DpMode.LOCAL)}


def _audit(setup: CanarySetup, origin: NoiseOrigin, trials: int = 300) -> dict:
    audits = run_canary_audit(setup, origin, trials, np.random.default_rng(2), DELTA, secret_seed=12345)
    return {a.attacker: a for a in audits}


@pytest.mark.parametrize("mode", [DpMode.CENTRAL, DpMode.LOCAL])
def test_canary_bound_stays_below_the_accountant_when_the_attacker_cannot_regenerate_the_noise(mode, canary_setups):
    audits = _audit(canary_setups[mode], NoiseOrigin.SECRET_SEED)
    projection, regenerate = audits["projection"], audits["regenerate-noise"]
    assert 1.5 < projection.tight_epsilon < projection.accountant_epsilon < projection.ceiling  # the audit could see it
    assert projection.bound.epsilon < projection.tight_epsilon
    assert regenerate.bound.epsilon < 0.1  # a guess of the seed buys nothing
    z = canary_setups[mode].config.noise_multiplier  # the score is the noise's projection, in units of C
    assert np.std(projection.scores_without) == pytest.approx(z, rel=0.15)
    assert np.mean(projection.scores_with) - np.mean(projection.scores_without) == pytest.approx(1.0, abs=0.5)


@pytest.mark.parametrize("mode", [DpMode.CENTRAL, DpMode.LOCAL])
def test_canary_audit_finds_the_leak_when_the_noise_is_seeded_publicly(mode, canary_setups):
    audits = _audit(canary_setups[mode], NoiseOrigin.PUBLIC_SEED)
    regenerate = audits["regenerate-noise"]
    assert np.all(regenerate.scores_without == 0.0)  # the attacker rebuilt the canary-free release bit for bit
    assert regenerate.bound.epsilon == pytest.approx(regenerate.ceiling)
    assert regenerate.bound.epsilon > regenerate.accountant_epsilon
    assert audits["projection"].bound.epsilon < regenerate.accountant_epsilon  # the leak is the seed, not the sum


def test_os_entropy_noise_is_not_regenerated_from_the_seed(canary_setups):
    audits = _audit(canary_setups[DpMode.LOCAL], NoiseOrigin.OS_ENTROPY, trials=20)
    regenerate = audits["regenerate-noise"]
    assert min(regenerate.scores_with.min(), regenerate.scores_without.min()) > 10  # noise of norm ~ z sqrt(d) C
    assert regenerate.bound.epsilon < regenerate.accountant_epsilon


def test_audit_cli_writes_the_report_and_says_the_noise_was_seeded(tmp_path, capsys):
    out = tmp_path / "audit"
    code, stdout, err = call(main, ["audit", "--devices", "3", "--rounds", "2", "--teacher-epochs", "2",
                                    "--trials", "40", "--secure-trials", "0", "--insecure-seeded-noise",
                                    "--out", str(out)], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} >= {"audit.md", "audit.json", "audit.png"}
    report = json.loads((out / "audit.json").read_text())
    assert [r["model"] for r in report["membership"]] == ["start", "none", "central", "local"]
    assert {(r["dp_mode"], r["noise"]) for r in report["canary"]} == {
        ("none", "no-noise"), ("central", "secret-seed"), ("central", "public-seed"),
        ("local", "secret-seed"), ("local", "public-seed")}
    assert report["federation_noise_seeded"] is True and report["machine"]["cores"]
    text = (out / "audit.md").read_text()
    assert "SEEDED (--insecure-seeded-noise)" in text and "comes from this run on this machine" in text
    assert "below 5% precision" in text and "wrote" in stdout


@pytest.mark.parametrize("args, words", [
    (["--trials", "5"], ("--trials 5 is too few", "pass 20 or more")),
    (["--secure-trials", "3"], ("--secure-trials 3", "pass 0 to skip")),
    (["--dp", "sometimes"], ("argument --dp: invalid choice",)),
], ids=["too-few-trials", "too-few-secure-trials", "unknown-mode"])
def test_audit_rejects_bad_flags_with_the_fix_before_training(args, words, tmp_path, capsys):
    code, _, err = call(main, ["audit", "--out", str(tmp_path), *args], capsys)
    assert code == 2
    one_error_line(err, *words)
