"""What the privacy machinery of issue 9 costs and buys, over several seeds, central DP at one epsilon.

Three runs per seed on the same cloud artefacts (dp-scaling's virtual fleet, in-process):
  - discrete: the deployed mechanism, every device every round (q = 1);
  - float: the float Gaussian of GaussianSumMechanism at the same epsilon (z without the grid's overhead);
  - sampled: the discrete mechanism on Poisson cohorts of rate q, amplification credited, z recalibrated.
For the sampled z, the epsilon that a first-K round (no random sampling, accounted with q = 1) would
have to report is computed too: the difference amplification makes. Noise is seeded (the float
Gaussian has no secure sampler), and the report says so.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

from cloud.accounting import compute_epsilon
from cloud.strategy import DpMode
from edge.privacy import DiscreteGaussianMechanism
from edge.student_runtime import TrainableStudent
from simulator.artifacts import prepare_cloud
from simulator.config import ExperimentConfig
from simulator.dp_scaling import DevicePool, run_point
from simulator.report import NOISE_WORDS

VARIANTS = ("discrete", "float", "sampled")


@dataclass(frozen=True)
class NoiseStudyRow:
    """One seed, one variant: the noise multiplier, the epsilon the ledger reports, and accuracy."""

    seed: int
    variant: str
    sampling_rate: float
    noise_multiplier: float
    epsilon: float
    epsilon_if_first_k: float  # the same z accounted with q = 1 (no amplification)
    accuracy: float


def run_noise_study(config: ExperimentConfig, seeds: list[int], devices: int, sampling_rate: float,
                    target_epsilon: float, samples_per_device: int, out_dir: Path) -> list[NoiseStudyRow]:
    """All variants over `seeds`; writes noise_study.json, noise_study.md and noise_study.png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[NoiseStudyRow] = []
    for seed in tqdm(seeds, desc="noise study", unit="seed"):
        art = prepare_cloud(replace(config, seed=seed))
        student = TrainableStudent.from_bytes(art.student_program)
        pool = DevicePool.from_artifacts(art, student.num_classes)
        dimension = int(sum(w.size for w in art.start_weights.values()))
        for variant in VARIANTS:
            q = sampling_rate if variant == "sampled" else 1.0
            point = run_point(art, DpMode.CENTRAL, devices, config.rounds, target_epsilon, config.delta,
                              config.training, samples_per_device, seed, student, pool, insecure_seeded_noise=True,
                              sampling_rate=q, float_noise=variant == "float")
            z_accounted = point.noise_multiplier if variant == "float" else \
                DiscreteGaussianMechanism(config.training.clip, point.noise_multiplier, dimension) \
                .effective_noise_multiplier
            first_k = compute_epsilon(z_accounted, 1.0, config.rounds, config.delta)
            rows.append(NoiseStudyRow(seed, variant, q, point.noise_multiplier, point.epsilon, first_k,
                                      point.accuracy))
    (out_dir / "noise_study.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    (out_dir / "noise_study.md").write_text(_report(rows, config, devices, sampling_rate, target_epsilon,
                                                    samples_per_device))
    _plot(rows, out_dir / "noise_study.png")
    return rows


def _paired(rows: list[NoiseStudyRow], variant: str) -> tuple[float, float]:
    """Mean and sd over seeds of (variant - discrete) accuracy, in points."""
    base = {r.seed: r.accuracy for r in rows if r.variant == "discrete"}
    diffs = [100 * (r.accuracy - base[r.seed]) for r in rows if r.variant == variant]
    return statistics.mean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0


def _report(rows: list[NoiseStudyRow], config: ExperimentConfig, devices: int, q: float, eps: float,
            samples: int) -> str:
    lines = [f"# Discrete vs float Gaussian, and real sampling vs first-K (central DP, epsilon = {eps}, "
             f"delta = {config.delta}, {config.rounds} rounds, {devices} virtual devices, {samples} samples each, "
             f"task {config.task})", "",
             f"DP noise: {NOISE_WORDS[True]}. Seeds {sorted({r.seed for r in rows})}.", "",
             "| variant | q | z | epsilon (ledger) | epsilon if first-K (q = 1) | accuracy mean | sd |",
             "|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
        vs = [r for r in rows if r.variant == v]
        accs = [r.accuracy for r in vs]
        lines.append(f"| {v} | {vs[0].sampling_rate:g} | {vs[0].noise_multiplier:.3f} | {vs[0].epsilon:.3f} | "
                     f"{vs[0].epsilon_if_first_k:.3f} | {statistics.mean(accs):.4f} | "
                     f"{statistics.stdev(accs) if len(accs) > 1 else 0.0:.4f} |")
    lines += ["", "Paired differences against `discrete` (accuracy points, mean ± sd over seeds):", ""]
    for v in ("float", "sampled"):
        mean, sd = _paired(rows, v)
        verdict = "within the spread" if abs(mean) <= sd else ("better" if mean > 0 else "worse")
        lines.append(f"- {v}: {mean:+.2f} ± {sd:.2f} ({verdict})")
    lines += ["", "![accuracy per seed](noise_study.png)", ""]
    return "\n".join(lines)


def _plot(rows: list[NoiseStudyRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for v in VARIANTS:
        vs = [r for r in rows if r.variant == v]
        ax.plot([r.seed for r in vs], [r.accuracy for r in vs], marker="o", label=v)
    ax.set_xlabel("seed")
    ax.set_ylabel("student test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

