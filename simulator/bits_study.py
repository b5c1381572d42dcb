"""Accuracy against update bits (32, 8, 4, 2) over several seeds, and each width's bytes against its limit.

Per seed the cloud is prepared once (simulator.artifacts.prepare_cloud); the same fleet then federates
in-process (simulator.federation.run_in_process: the device code and wire payloads of a broker run) once
per bit width. Bytes are those of one device's update on the wire: the encoded update, its chunk framing
and the MQTT PUBLISH around it (simulator.traffic.mqtt_publish_bytes), against the physical limit
parameters x bits / 8. A width's accuracy is compared with float32's seed by seed (paired difference).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.chunking import split_message
from edge.local_training import LocalResult, update_payload
from edge.model_step import quantised_step
from edge.seeding import rounding_generator
from edge.topics import FleetTopics
from edge.wire import ModelStepMeta, WeightsMeta, encode_model_step, encode_weights
from simulator.artifacts import CloudArtifacts, prepare_cloud
from simulator.config import ExperimentConfig
from simulator.federation import fleet_bundle, run_in_process
from simulator.traffic import mqtt_publish_bytes

BITS = (32, 8, 4, 2)


@dataclass(frozen=True)
class BitsRow:
    """One seed at one bit width: final accuracy on the test split and on the devices' own data."""

    seed: int
    bits: int
    accuracy: float
    device_accuracy: float


def update_wire_bytes(config: ExperimentConfig, art: CloudArtifacts, bits: int, fleet: str = "demo") -> int:
    """Bytes of one device's round update at `bits` on the wire: encoding, chunk framing, MQTT PUBLISH."""
    plan = replace(fleet_bundle(config, art, 0.0, fleet).plans[0], update_bits=bits)
    rng = np.random.default_rng(0)
    delta = {k: rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in art.start_weights.items()}
    blob = update_payload(LocalResult(delta, 100, []), plan, config.rounds - 1, config.rounds - 1,
                          rounding_generator(np.random.SeedSequence(0), 0))
    topic = f"dmskd/{fleet}/round/{config.rounds - 1}/update/{plan.device}"
    return sum(mqtt_publish_bytes(f"{topic}/{i}", len(c))
               for i, c in enumerate(split_message(blob, "0" * 16, config.chunk_limit)))


def model_step_wire_bytes(config: ExperimentConfig, art: CloudArtifacts, bits: int, fleet: str = "demo") -> int:
    """Bytes of one device's download of the global model at `bits`: the step (edge.model_step), or the whole
    float32 model at 32, chunk framing and MQTT PUBLISH included."""
    weights = art.start_weights
    if bits == 32:
        topic = f"dmskd/{fleet}/model/{config.rounds - 1}"
        blob = encode_weights(weights, WeightsMeta(fleet, config.rounds - 1, config.rounds - 1))
    else:
        rng = np.random.default_rng(0)
        moved = {k: v + rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in weights.items()}
        wire, _ = quantised_step(weights, moved, bits, rng)
        topic = FleetTopics(fleet).model_step
        blob = encode_model_step(wire, ModelStepMeta(fleet, config.rounds - 1, config.rounds - 1, config.rounds - 2,
                                                     f"sq{bits}-delta"))
    return sum(mqtt_publish_bytes(f"{topic}/{i}", len(c))
               for i, c in enumerate(split_message(blob, "0" * 16, config.chunk_limit)))


def run_bits_study(configs: list[ExperimentConfig], out_dir: Path, bits: tuple[int, ...] = BITS) -> dict:
    """Every seed's config at every bit width; writes bits-study.json, .md and .png to out_dir."""
    rows: list[BitsRow] = []
    sizes: dict[int, int] = {}
    down: dict[int, int] = {}
    params = 0
    for config in configs:
        art = prepare_cloud(config, progress=lambda msg, s=config.seed: tqdm.write(f"seed {s}: {msg}"))
        params = int(sum(w.size for w in art.start_weights.values()))
        for b in tqdm(bits, desc=f"seed {config.seed}", unit="width"):
            run = run_in_process(replace(config, update_bits=b, model_bits=b), art, 0.0)
            last = run.records[-1].metrics
            rows.append(BitsRow(config.seed, b, last["accuracy"], last.get("device_accuracy", float("nan"))))
            sizes.setdefault(b, update_wire_bytes(config, art, b))
            down.setdefault(b, model_step_wire_bytes(config, art, b))
    report = summarise(rows, sizes, params, down)
    report["settings"] = {k: v for k, v in asdict(configs[0]).items() if k not in ("seed", "training")}
    report["settings"]["training"] = asdict(configs[0].training)
    report["seeds"] = [c.seed for c in configs]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bits-study.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "bits-study.md").write_text(markdown(report))
    _plot(report, out_dir / "bits-study.png")
    return report


def summarise(rows: list[BitsRow], sizes: dict[int, int], params: int, down: dict[int, int] | None = None) -> dict:
    """Per width: mean and sd of both accuracies, the paired difference to float32, bytes against the limit."""
    by = {b: [r for r in rows if r.bits == b] for b in sorted({r.bits for r in rows}, reverse=True)}
    ref = {r.seed: r for r in by.get(32, [])}
    out = []
    for b, rs in by.items():
        diffs = [100 * (r.device_accuracy - ref[r.seed].device_accuracy) for r in rs if r.seed in ref]
        test_diffs = [100 * (r.accuracy - ref[r.seed].accuracy) for r in rs if r.seed in ref]
        limit = params * b / 8
        out.append({"bits": b, "accuracy": _mean_sd([r.accuracy for r in rs]),
                    "device_accuracy": _mean_sd([r.device_accuracy for r in rs]),
                    "device_points_vs_float32": _mean_sd(diffs), "test_points_vs_float32": _mean_sd(test_diffs),
                    "update_bytes": sizes[b], "limit_bytes": limit, "ratio_to_limit": sizes[b] / limit,
                    **({"model_bytes": down[b], "model_ratio_to_limit": down[b] / limit} if down and b in down
                       else {})})
    return {"student_parameters": params, "widths": out, "rows": [asdict(r) for r in rows]}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else (0.0, 0.0)


def _spread_words(mean: float, sd: float) -> str:
    return "within the spread" if abs(mean) <= sd else ("better" if mean > 0 else "worse")


def markdown(report: dict) -> str:
    """The report's table: accuracy and bytes per width."""
    lines = [f"# Update bits: accuracy and bytes ({len(report['seeds'])} seeds, {report['student_parameters']:,} "
             f"student parameters)", "",
             "Both directions at the width: the update up, the global model's step down (edge.model_step).", "",
             "| bits | test accuracy | device accuracy | device points vs float32 | update bytes (MQTT incl.) "
             "| limit (params x bits) | ratio | model step bytes down | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w in report["widths"]:
        (a, sa), (d, sd), (p, sp) = w["accuracy"], w["device_accuracy"], w["device_points_vs_float32"]
        vs = "-" if w["bits"] == 32 else f"{p:+.2f} ± {sp:.2f}, {_spread_words(p, sp)}"
        lines.append(f"| {w['bits']} | {a:.4f} ± {sa:.4f} | {d:.4f} ± {sd:.4f} | {vs} | {w['update_bytes']:,} "
                     f"| {w['limit_bytes']:,.0f} | {w['ratio_to_limit']:.3f} | {w.get('model_bytes', 0):,} "
                     f"| {w.get('model_ratio_to_limit', float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = report["widths"]
    bits = [w["bits"] for w in widths]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, label in (("accuracy", "test split"), ("device_accuracy", "devices' own data")):
        left.errorbar(bits, [w[key][0] for w in widths], yerr=[w[key][1] for w in widths], marker="o", label=label,
                      capsize=3)
    left.set_xscale("log", base=2)
    left.set_xticks(bits, [str(b) for b in bits])
    left.set_xlabel("update bits")
    left.set_ylabel("final accuracy (mean ± sd over seeds)")
    left.legend()
    right.bar([str(b) for b in bits], [w["update_bytes"] for w in widths], label="on the wire")
    right.plot([str(b) for b in bits], [w["limit_bytes"] for w in widths], "k_", markersize=30, label="params x bits")
    right.set_ylabel("bytes per device-round")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
