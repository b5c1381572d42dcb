"""compare.json, compare.md (the Table 1 comparison) and compare.png (accuracy per round per method)."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.baselines.result import MethodResult

HOW_MEASURED = [
    "Bytes are len() of the safetensors payloads (edge.wire) each device downloads (float32 global model, every "
    "round) and uploads (its update), summed over devices; MQTT headers and chunk framing are not counted.",
    "One-off bytes: the int8 shard (FedKD: the full-teacher prefix; DMSKD: the planned one) and the trainable "
    "student program, once per device. FedAvg-family methods are charged nothing for the model definition.",
    "FedCompress uploads uint8 codes plus a float32 [scale, offset] per tensor; its downloads stay float32.",
    "Local FLOPs per epoch (mean over devices): FedAvg family 3 x forward FLOPs of the whole multi-exit teacher "
    "(all exits, cloud.profiler.layer_flops) x samples; FedKD / DMSKD shard forward + 3 x student forward, x samples "
    "(the shard actually runs once per device, not every epoch).",
    "Epsilon: RDP accountant (cloud.accounting), every device every round (q = 1); 0 where no noise is added.",
    "DMSKD / FedKD device updates are clipped to C as in the main job (edge.local_training.train_round); "
    "FedAvg / FedCompress updates are not clipped.",
    "Wall seconds: the method's federated loop in this process (after the shared cloud preparation).",
]


def _eps(value: float) -> str:
    return "0" if value == 0 else f"{value:.2f}"


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def table_rows(results: list[MethodResult]) -> list[list[str]]:
    """One row of formatted cells per method."""
    base = next((r.bytes_total for r in results if r.method == "FedAvg"), None)
    rows = []
    for r in results:
        ratio = f"{r.bytes_total / base:.4f}" if base else "-"
        rows.append([r.method, f"{r.params:,}", f"{r.final_accuracy:.4f}", f"{r.final_device_accuracy:.4f}",
                     f"{_mean(r.bytes_up_per_round):,.0f}",
                     f"{_mean(r.bytes_down_per_round):,.0f}", f"{r.one_off_bytes:,}", f"{r.bytes_total:,}", ratio,
                     _eps(r.epsilon), f"{r.flops_per_epoch_mean:,.0f}", f"{r.wall_seconds:.1f}"])
    return rows


HEADER = ["method", "params", "top-1 accuracy", "device accuracy (mean)", "upload B / round", "download B / round",
          "one-off B", "total B",
          "total / FedAvg", "epsilon", "local FLOPs / epoch / device", "wall s"]


def markdown_table(results: list[MethodResult]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def rounds_table(results: list[MethodResult]) -> str:
    """Test accuracy after every round (round 0 = initial weights)."""
    rounds = max(len(r.accuracy_per_round) for r in results)
    head = "| round | " + " | ".join(r.method for r in results) + " |"
    lines = [head, "|" + "---|" * (len(results) + 1)]
    lines.append("| 0 | " + " | ".join(f"{r.initial_accuracy:.4f}" for r in results) + " |")
    for i in range(rounds):
        cells = [f"{r.accuracy_per_round[i]:.4f}" if i < len(r.accuracy_per_round) else "" for r in results]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir: Path, results: list[MethodResult], context: dict) -> None:
    """All three files; the plot needs at least one round."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"context": context, "methods": [r.to_dict() for r in results]}
    (out_dir / "compare.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    (out_dir / "compare.md").write_text(_markdown(results, context))
    plot_accuracy(out_dir / "compare.png", results)


def _markdown(results: list[MethodResult], c: dict) -> str:
    setup = (f"{c.get('devices')} devices (digits, Dirichlet non-IID; examples per device {c.get('device_examples')}), "
             f"{c.get('rounds')} rounds, every device every round, {c.get('local_epochs')} local epochs, "
             f"seed {c.get('seed')}; test split {c.get('test_examples')} examples. Teacher-architecture methods: "
             f"{c.get('teacher_optimizer')}, batch {c.get('batch_size')}. "
             f"Student methods: {c.get('student_optimizer')}, alpha {c.get('alpha')}, tau {c.get('tau')}. "
             f"DP rows: clip C = {c.get('clip')}, central Gaussian noise z = {c.get('noise_multiplier', 0):.3f} "
             f"calibrated to epsilon {c.get('target_epsilon')} at delta {c.get('delta')}. "
             f"Cloud-trained teacher (final exit, test): {c.get('cloud_teacher_accuracy', 0):.4f}.")
    lines = ["# Table 1: DMSKD against its baselines", "", setup, ""]
    if c.get("command"):
        lines += [f"Command: `{c['command']}`", ""]
    lines += [markdown_table(results), "", "![test accuracy per round](compare.png)", "", "## How it is measured", ""]
    lines += [f"- {line}" for line in HOW_MEASURED]
    lines += ["", "## Test accuracy per round", "", rounds_table(results), ""]
    return "\n".join(lines)


def plot_accuracy(path: Path, results: list[MethodResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4))
    for r in results:
        ys = [r.initial_accuracy, *r.accuracy_per_round]
        ax.plot(range(len(ys)), ys, marker="o", markersize=3, label=r.method)
    ax.set_xlabel("round (0 = initial weights)")
    ax.set_ylabel("top-1 test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
