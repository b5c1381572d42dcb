"""metrics.json, report.md and the accuracy plot for one run directory."""

from __future__ import annotations

import json
from pathlib import Path

from cloud.rejections import rejected_total

NOISE_WORDS = {True: "SEEDED (--insecure-seeded-noise): reproducible and predictable, not private",
               False: "discrete Gaussian, exact sampler over OS entropy"}


def write_metrics(run_dir: Path, metrics: dict) -> Path:
    path = run_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return path


def plot_accuracy(run_dir: Path, history: list[dict], teacher_accuracy: float) -> Path:
    """PNG of the global student's test accuracy per round against the teacher's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["round"] + 1 for h in history], [h["accuracy"] for h in history], marker="o",
            label="global student (DMSKD)")
    ax.axhline(teacher_accuracy, color="grey", linestyle="--", label="teacher (cloud)")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = run_dir / "accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


DEVICES_LISTED = 50  # above this many devices the report groups them by shard and local FLOPs


def wire_rows(m: dict) -> list[str]:
    """Report rows for what one device sends and receives per round against the bits x parameters limit, and
    how the fleet was sampled (metrics of runs before these keys existed give no rows)."""
    rows = []
    if "update_bits" in m and m.get("update_bytes_limit"):
        rows.append(f"| update per device-round: bits / bytes on the wire (MQTT included) / limit "
                    f"({m['student_parameters']:,} parameters x bits) | {m['update_bits']} / "
                    f"{m['update_bytes_per_device_round']:,.0f} / {m['update_bytes_limit']:,.0f} "
                    f"({m['update_bytes_per_device_round'] / m['update_bytes_limit']:.3f}x) |")
    if "model_bits" in m and m.get("model_bytes_limit") and m.get("model_step_bytes"):
        rows.append(f"| global model down per round: bits / step bytes / limit | {m['model_bits']} / "
                    f"{m['model_step_bytes']:,.0f} / {m['model_bytes_limit']:,.0f} "
                    f"({m['model_step_bytes'] / m['model_bytes_limit']:.3f}x) |")
    if "sampling_rate" in m:
        rows.append(f"| devices sampled per round (q) | {m['sampling_rate']:g} |")
    scheme = (m.get("device_sampling") or {}).get("scheme")
    if scheme:
        rows.append(f"| device data | {scheme}" + (f", {m['device_sampling']['samples_per_device']} samples per device"
                                                 if "samples_per_device" in m["device_sampling"] else "") + " |")
    return rows


def device_table(flops: dict[str, int], plan: dict[str, str]) -> list[str]:
    """One row per device for a small fleet; for a large one, one row per (shard, local FLOPs) with its count."""
    if len(flops) <= DEVICES_LISTED:
        return ["| device | shard | local FLOPs / epoch |", "|---|---|---|",
                *(f"| {dev} | {plan[dev]} | {f:,} |" for dev, f in flops.items())]
    groups: dict[tuple[str, int], list[str]] = {}
    for dev, f in flops.items():
        groups.setdefault((plan[dev], f), []).append(dev)
    return ["| shard | local FLOPs / epoch | devices | first, last |", "|---|---|---|---|",
            *(f"| {shard} | {f:,} | {len(devs)} | {devs[0]}, {devs[-1]} |"
              for (shard, f), devs in sorted(groups.items()))]


def write_report(run_dir: Path, m: dict) -> Path:
    """A Markdown summary a person reads next to the plot."""
    lines = [
        f"# DMSKD run `{run_dir.name}`", "",
        f"{m['devices']} devices, {m['rounds']} rounds, DP mode `{m['dp_mode']}`, broker `{m['broker']}`.", "",
        "| metric | value |", "|---|---|",
        f"| teacher accuracy (test) | {m['teacher_accuracy']:.4f} |",
        f"| global student accuracy (test) | {m['student_accuracy']:.4f} |",
        f"| student / teacher | {m['student_accuracy'] / m['teacher_accuracy']:.3f} |",
        f"| device labels (share of each device's samples) | {m['device_labels']:g} |",
        f"| federation start | {'cloud-distilled student' if m['warm_start'] else 'fresh student'} |",
        f"| cloud-only / cloud-distilled student, no federation (test) | {m['cloud_only_accuracy']:.4f} / "
        f"{m['cloud_distilled_accuracy']:.4f} |",
        f"| on the devices' own held-out data: teacher / cloud-distilled / federated student | "
        f"{m['teacher_device_accuracy']:.4f} / {m['cloud_distilled_device_accuracy']:.4f} / "
        f"{m['student_device_accuracy']:.4f} |",
        f"| bytes on the wire, total | {m['bytes_total']:,} |",
        f"| FedAvg (full teacher) bytes, total | {m['fedavg_bytes_total']:,} |",
        f"| DMSKD / FedAvg bytes | {m['bytes_total'] / m['fedavg_bytes_total']:.4f} |",
        f"| shard bytes (downloaded once) | {m['shard_bytes_total']:,} |",
        *wire_rows(m),
        f"| noise multiplier z | {m['noise_multiplier']} |",
        f"| DP noise | {NOISE_WORDS[m['noise_seeded']] if m['dp_mode'] != 'none' else 'none'} |",
        f"| epsilon (RDP accountant, delta={m['delta']}) | {m['epsilon']} |",
        f"| wall time | {m['wall_seconds']:.1f} s |", "",
        "![accuracy per round](accuracy.png)", "",
        "## Shards", "",
        "| shard | exit | bytes | devices | LiteRT vs Keras top-1 agreement | int8 accuracy (test) "
        "| on its devices' held-out data: shard / cloud-distilled / federated student |",
        "|---|---|---|---|---|---|---|",
    ]
    for sid, s in m["shards"].items():
        own = (f"{s['shard_device_accuracy']:.4f} / {s['cloud_distilled_device_accuracy']:.4f} / "
               f"{s['federated_device_accuracy']:.4f} ({s['device_holdout_examples']} examples)"
               if "shard_device_accuracy" in s else "-")
        lines.append(f"| {sid} | {s['exit']} | {s['bytes']:,} | {s['devices']} | {s['top1_agreement']:.4f} "
                     f"| {s['tflite_accuracy']:.4f} | {own} |")
    lines += ["", "## Devices", "", *device_table(m["local_flops_per_epoch"], m["plan"])]
    lines += ["", "## Rounds", "", "| round | accuracy | accepted | rejected | up bytes | down bytes |",
              "|---|---|---|---|---|---|"]
    for h, up, down in zip(m["history"], m["bytes_up_per_round"], m["bytes_down_per_round"]):
        lines.append(f"| {h['round']} | {h['accuracy']:.4f} | {len(h['accepted'])} | {rejected_total(h)} "
                     f"| {up:,} | {down:,} |")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
