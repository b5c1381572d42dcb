"""The comparison over several seeds: mean and spread per method, and paired differences against DMSKD.

The test split is small (359 digits: one example is 0.28 points), so a method is called better or
worse than DMSKD only when the mean of its per-seed paired difference exceeds that difference's
standard deviation; otherwise the report says the difference is within the spread.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from simulator.artifacts import prepare_cloud
from simulator.baselines.result import MethodResult
from simulator.compare import CompareSettings, run_compare
from simulator.compare_report import markdown_table
from simulator.config import ExperimentConfig
from simulator.report import NOISE_WORDS

REFERENCE = "DMSKD"


@dataclass(frozen=True)
class MethodSummary:
    """One method over the seeds: accuracy mean and sd, and its paired difference against DMSKD."""

    method: str
    seeds: int
    accuracy_mean: float
    accuracy_sd: float
    device_accuracy_mean: float
    device_accuracy_sd: float
    bytes_total_mean: float
    diff_examples_mean: float | None  # test examples, method minus DMSKD, mean over seeds
    diff_examples_sd: float | None
    device_diff_points_mean: float | None  # device accuracy, method minus DMSKD, in points
    device_diff_points_sd: float | None

    @property
    def verdict(self) -> str:
        """better / worse than DMSKD on the test split, or within the spread."""
        return _verdict(self.diff_examples_mean, self.diff_examples_sd)

    @property
    def device_verdict(self) -> str:
        return _verdict(self.device_diff_points_mean, self.device_diff_points_sd)


def _verdict(mean: float | None, sd: float | None) -> str:
    if mean is None or sd is None:
        return "-"
    if abs(mean) <= sd:
        return "within spread"
    return "better" if mean > 0 else "worse"


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _paired(rows: list[MethodResult], refs: list[MethodResult], n_tests: list[int]
            ) -> tuple[list[float], list[float]]:
    """Per seed: test-split difference in examples and device-accuracy difference in points, row minus DMSKD."""
    tests = [(r.final_accuracy - ref.final_accuracy) * n for r, ref, n in zip(rows, refs, n_tests)]
    devices = [100 * (r.final_device_accuracy - ref.final_device_accuracy) for r, ref in zip(rows, refs)]
    return tests, devices


def summarise(per_seed: list[tuple[int, list[MethodResult]]]) -> list[MethodSummary]:
    """Every method present in all seeds, in the order of the first seed's rows."""
    tables = [{r.method: r for r in results} for _, results in per_seed]
    n_tests = [n for n, _ in per_seed]
    refs = [t[REFERENCE] for t in tables if REFERENCE in t]
    out = []
    for name in (r.method for r in per_seed[0][1]):
        if not all(name in t for t in tables):
            continue
        rows = [t[name] for t in tables]
        acc = [r.final_accuracy for r in rows]
        dev = [r.final_device_accuracy for r in rows]
        stats: list[float | None] = [None] * 4
        if len(refs) == len(tables):
            tests, devices = _paired(rows, refs, n_tests)
            stats = [statistics.mean(tests), _sd(tests), statistics.mean(devices), _sd(devices)]
        out.append(MethodSummary(name, len(rows), statistics.mean(acc), _sd(acc), statistics.mean(dev), _sd(dev),
                                 statistics.mean(r.bytes_total for r in rows), *stats))
    return out


def summary_table(rows: list[MethodSummary]) -> str:
    """The seeds' Markdown table."""
    head = ["method", "test accuracy (mean ± sd)", "device accuracy (mean ± sd)", "total bytes (mean)",
            "test: minus DMSKD, examples (mean ± sd)", "verdict", "devices: minus DMSKD, points (mean ± sd)",
            "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        diff = "-" if r.diff_examples_mean is None else f"{r.diff_examples_mean:+.1f} ± {r.diff_examples_sd:.1f}"
        ddiff = "-" if r.device_diff_points_mean is None else \
            f"{r.device_diff_points_mean:+.2f} ± {r.device_diff_points_sd:.2f}"
        lines.append(f"| {r.method} | {r.accuracy_mean:.4f} ± {r.accuracy_sd:.4f} | "
                     f"{r.device_accuracy_mean:.4f} ± {r.device_accuracy_sd:.4f} | {r.bytes_total_mean:,.0f} | "
                     f"{diff} | {r.verdict} | {ddiff} | {r.device_verdict} |")
    return "\n".join(lines)


def run_seed_study(configs: list[ExperimentConfig], settings: list[CompareSettings], out_dir: Path,
                   command: str = "") -> str:
    """One comparison per seed (out_dir itself for one seed, out_dir/seed-S for several) and, for several,
    compare_seeds.md and .json in out_dir; returns the Markdown table to print."""
    single = len(configs) == 1
    per_seed = []
    for config, s in zip(configs, settings):
        art = prepare_cloud(config, progress=print)
        results = run_compare(art, s, out_dir if single else out_dir / f"seed-{config.seed}",
                              context={"command": command})
        per_seed.append((len(art.split.test), results))
        if single:
            return markdown_table(results)
    rows = summarise(per_seed)
    c = configs[0]
    setup = (f"{len(configs)} seeds ({', '.join(str(x.seed) for x in configs)}), {c.devices} devices, {c.rounds} "
             f"rounds, device labels {c.labelled_fraction:g} (0 = none), cloud proxy split {c.cloud_fraction:g} of "
             f"the data, device shift {c.device_shift:g}, cloud augmentation {c.cloud_augment:g}, "
             f"federation {'warm-started from the cloud-distilled student' if c.warm_start else 'cold'}; "
             f"test split {per_seed[0][0]} examples. 'better'/'worse' only where the paired difference's mean "
             f"exceeds its standard deviation. DP rows' noise: {NOISE_WORDS[settings[0].insecure_seeded_noise]}.")
    table = summary_table(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare_seeds.md").write_text("\n".join(
        ["# The comparison over seeds", "", setup, "", f"Command: `{command}`", "", table, "",
         "Per-seed tables: " + ", ".join(f"[seed {x.seed}](seed-{x.seed}/compare.md)" for x in configs), ""]))
    (out_dir / "compare_seeds.json").write_text(json.dumps(
        {"setup": setup, "command": command, "methods": [r.__dict__ for r in rows],
         "per_seed": [{"seed": x.seed, "methods": [r.to_dict() for r in res]} for x, (_, res) in
                      zip(configs, per_seed)]}, indent=2))
    return table
