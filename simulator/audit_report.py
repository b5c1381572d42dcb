"""audit.md, audit.png and the contents of audit.json for `python -m simulator audit`."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from simulator.audit import FPR_LEVELS, RECALL_LEVELS, CanaryAudit, NoiseOrigin, attack_roc, trials_to_show
from simulator.report import NOISE_WORDS

if TYPE_CHECKING:
    from simulator.audit_command import AuditSettings, MembershipRow

ORIGIN_WORDS = {
    NoiseOrigin.PUBLIC_SEED.value: "SEEDED from the run's public seed (the old behaviour): predictable",
    NoiseOrigin.SECRET_SEED.value: "seeded from a secret 128-bit seed (secrets.randbits) the attacker never sees: "
                                   "the vectorised sampler, same distribution as OS-entropy noise (stand-in)",
    NoiseOrigin.OS_ENTROPY.value: "discrete Gaussian, exact sampler over OS entropy (SecureNoise)",
    NoiseOrigin.NONE.value: "none (DP off)",
}
MODEL_ORDER = ("start", "none", "central", "local")
MODEL_WORDS = {"start": "start (cloud-distilled, never saw the devices' data)", "none": "federated, DP off",
               "central": "federated, central DP", "local": "federated, local DP"}


def _mean_sd(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _eps(value: float | None) -> str:
    return "∞ (no noise)" if value is None or value == float("inf") else f"{value:.2f}"


def membership_table(rows: list[MembershipRow]) -> list[str]:
    """Mean ± sd over seeds per model: accuracy, epsilon, AUC, precision at low recall, TPR at low FPR."""
    head = (["model", "seeds", "test accuracy", "epsilon (RDP, whole run)", "AUC"]
            + [f"precision at recall {r:.0%}" for r in RECALL_LEVELS]
            + [f"TPR at FPR {f:.1%}" for f in FPR_LEVELS] + ["members / non-members"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in MODEL_ORDER:
        got = [r for r in rows if r.dp_mode == model]
        if not got:
            continue
        eps = [r.epsilon for r in got if r.epsilon is not None]
        res = [r.result for r in got]
        cells = [MODEL_WORDS[model], str(len(got)), _mean_sd([r.test_accuracy for r in got]),
                 _mean_sd(eps) if eps else "-", _mean_sd([x.auc for x in res])]
        cells += [_mean_sd([x.precision_at_recall[level] for x in res]) for level in RECALL_LEVELS]
        cells += [_mean_sd([x.tpr_at_fpr[level] for x in res]) for level in FPR_LEVELS]
        cells.append(f"{res[0].members} / {res[0].non_members}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def canary_table(audits: list[CanaryAudit]) -> list[str]:
    """One row per (mode, noise origin, attacker): the lower bound beside the accountant's epsilon."""
    head = ["DP mode", "noise", "attacker", "trials (with / without canary)", "epsilon lower bound (95%)",
            "most these trials can show", "accountant epsilon (RDP, one release)", "tight epsilon (PLD)",
            "verdict", "errors at the best threshold (FP / FN)", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in audits:
        b = a.bound
        lines.append("| " + " | ".join([
            a.dp_mode, a.noise, a.attacker, f"{a.trials} ({b.positives} / {b.negatives})", f"{b.epsilon:.2f}",
            f"{a.ceiling:.2f}", _eps(a.accountant_epsilon), _eps(a.tight_epsilon), verdict(a),
            f"{b.false_positives} / {b.false_negatives}", f"{a.seconds:.1f}"]) + " |")
    return lines


def verdict(audit: CanaryAudit) -> str:
    """Whether the empirical bound stays below what the accountant claims."""
    if audit.accountant_epsilon == float("inf"):
        return "no claim to test (DP off)"
    if audit.bound.epsilon > audit.accountant_epsilon:
        return "**LEAK: above the accountant**"
    if audit.bound.false_positives == audit.bound.false_negatives == 0:
        return (f"**perfect separation: a leak held back only by the trials** (about "
                f"{trials_to_show(audit.accountant_epsilon, audit.bound.delta):,} would show it above the accountant)")
    return "below the accountant"


def claim_line(rows: list[MembershipRow]) -> str:
    """The paper's "below 5% precision", against what the attack measured here."""
    federated = [r for r in rows if r.dp_mode != "start"]
    low = RECALL_LEVELS[0]
    values = [r.result.precision_at_recall[low] for r in federated] or [float("nan")]
    chance = federated[0].result.chance_precision if federated else 0.5
    below = sum(v < 0.05 for v in values)
    return (f"The paper claims the attack has \"below 5% precision\". On these balanced sets chance precision is "
            f"{chance:.0%} (the members' share), so 5% would be far below guessing; measured precision at "
            f"{low:.0%} recall ranges {min(values):.3f}-{max(values):.3f} over the federated students "
            f"({below} of {len(values)} below 5%). A precision figure means nothing without its member share: "
            f"what tells whether the attack works is how far AUC and precision stand above chance "
            f"(0.5 and {chance:.2f}), and the 'start' row, a student that never saw the members, is the control.")


def write_report(out_dir: Path, settings: AuditSettings, z: float, rows: list[MembershipRow],
                 audits: list[CanaryAudit], machine: dict, command: str, wall: float) -> dict:
    """Write audit.md and audit.png; return what audit.json holds."""
    c = settings.config
    dp_modes = [m.value for m in settings.modes]
    seeded = c.insecure_seeded_noise and any(m != "none" for m in dp_modes)
    federation_noise = NOISE_WORDS[c.insecure_seeded_noise] if any(m != "none" for m in dp_modes) else "none (DP off)"
    where = (f"{machine['cpu']}, {machine['cores']} cores, {machine['platform']}, Python {machine['python']}, "
             f"{machine['date']}")
    lines = [
        "# Privacy audit: membership inference and an epsilon lower bound from canaries", "",
        f"Command: `{command or 'python -m simulator audit'}` ({wall:.0f} s)", "",
        f"Every figure below comes from this run on this machine: {where}.", "",
        f"Task {c.task if c.data is None else c.data}, {c.devices} devices, {c.rounds} rounds, every device every "
        f"round (q = 1), clip C = {c.training.clip}, target epsilon {settings.target_epsilon} at delta = {c.delta} "
        f"for the whole run: z = {z:.3f}; seeds {', '.join(map(str, settings.seeds))}. "
        f"DP noise of the federations: {federation_noise}; of the canary trials: named in each row of (b).",
        "",
        "## (a) Membership inference on the final global student", "",
        "Loss-threshold attack (score = minus the student's cross-entropy with the true label, the LiteRT program "
        "the devices run). Members: the devices' training samples; non-members: the devices' held-out samples"
        + ("" if c.device_shift else " and the test split") + ", which no party trained on. The sets are balanced "
        "(equally many members and non-members, the larger side subsampled), so AUC 0.5 and precision 0.5 are "
        "chance. Precision at recall r: the best precision of any threshold flagging at least r of the members. "
        "Mean ± sd over seeds.", "",
        *membership_table(rows), "",
        claim_line(rows), "",
        "## (b) Epsilon lower bound from canaries, beside the accountant", "",
        "One round's release as the accountant models it, audited over many trials: in each, a coin decides whether "
        "a canary device (update: a fixed random direction of norm C) takes part; the honest updates are the "
        f"{c.devices} devices' real clipped round-0 deltas of seed {settings.seeds[0]}. Central: the round's "
        "released delta from `cloud.strategy.aggregate` (clipping, grid, discrete Gaussian, fixed denominator). "
        "Local: the canary device's own upload (`DiscreteGaussianMechanism.privatise` of C*u with the canary, of a "
        "zero update without), which the broker and the aggregator see: a stronger position than the average. "
        "Attackers: `projection` knows the honest updates and scores the release's projection on the canary "
        "direction; `regenerate-noise` regenerates the noise from the run's public seed, re-runs the release "
        "without the canary and scores the distance. Lower bound: the largest over thresholds of "
        "log((1 - delta - FPR) / FNR) (and symmetric) with Clopper-Pearson 95% upper bounds on both rates "
        "(Jagielski et al. 2020, Nasr et al. 2021), threshold chosen on the same trials. The accountant's epsilon "
        "is that of the one release's event (`release_event`) at the same delta; 'most these trials can show' is "
        "the bound at perfect separation, the audit's ceiling.", "",
        "Noise origins: " + "; ".join(f"`{k}`: {v}" for k, v in ORIGIN_WORDS.items()) + ".", "",
        *canary_table(audits), "",
        "![ROC of the membership attack and the canary scores](audit.png)", "",
    ]
    (out_dir / "audit.md").write_text("\n".join(lines))
    _plot(rows, audits, out_dir / "audit.png")
    return {"command": command, "machine": machine, "wall_seconds": wall,
            "settings": {"task": c.task, "data": c.data, "devices": c.devices, "rounds": c.rounds,
                         "clip": c.training.clip, "target_epsilon": settings.target_epsilon, "delta": c.delta,
                         "noise_multiplier": z, "seeds": list(settings.seeds), "dp_modes": dp_modes,
                         "trials": settings.trials, "secure_trials": settings.secure_trials,
                         "device_shift": c.device_shift, "device_labels": c.labelled_fraction,
                         "warm_start": c.warm_start},
            "federation_noise_seeded": seeded,
            "federation_noise": federation_noise,
            "canary_noise_origins": ORIGIN_WORDS,
            "membership": [r.to_dict() for r in rows],
            "canary": [a.to_dict() for a in audits]}


def _plot(rows: list[MembershipRow], audits: list[CanaryAudit], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    first = rows[0].seed if rows else 0
    for r in (r for r in rows if r.seed == first):
        fpr, tpr = attack_roc(r.member_losses, r.non_member_losses)
        ax.plot(fpr, tpr, label=f"{r.dp_mode} (AUC {r.result.auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate",
           title=f"membership attack, seed {first}")
    ax.legend(fontsize=8)
    ax = axes[1]
    for a in (a for a in audits if a.attacker == "projection" and a.noise == NoiseOrigin.SECRET_SEED.value):
        for scores, style, word in ((a.scores_without, "-", "without"), (a.scores_with, "--", "with")):
            ax.hist(scores, bins=50, histtype="step", linestyle=style, label=f"{a.dp_mode}, {word} canary")
    ax.set(xlabel="projection on the canary direction / C", ylabel="trials",
           title="projection attacker, noise it cannot regenerate")
    ax.legend(fontsize=8)
    ax = axes[2]
    for a in (a for a in audits if a.attacker == "regenerate-noise" and a.dp_mode == "central"
              and a.noise in (NoiseOrigin.PUBLIC_SEED.value, NoiseOrigin.SECRET_SEED.value)):
        for scores, style, word in ((a.scores_without, "-", "without"), (a.scores_with, "--", "with")):
            ax.hist(scores, bins=50, histtype="step", linestyle=style, label=f"{a.noise}, {word} canary")
    ax.set(xlabel="distance to the release re-run without the canary / C", ylabel="trials",
           title="central: attacker regenerating public-seed noise")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
