"""One DMSKD experiment end to end: cloud preparation, federation over MQTT, metrics and report."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cloud.accounting import calibrate_discrete_noise_multiplier
from cloud.strategy import DpMode
from edge.broker_address import parse_broker_url
from edge.mqtt_loop import raise_open_file_limit
from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent
from simulator.artifacts import CloudArtifacts, prepare_cloud
from simulator.broker import BrokerError, EmbeddedBroker, MosquittoBroker, mosquitto_binary
from simulator.config import ExperimentConfig
from simulator.device_processes import device_process_count
from simulator.federation import FederationOutcome, fleet_evaluator, run_federation
from simulator.report import plot_accuracy, write_metrics, write_report
from simulator.traffic import fedavg_bytes, model_step_wire_bytes, traffic_summary, update_wire_bytes


def resolve_noise_multiplier(config: ExperimentConfig) -> float:
    """z given, or calibrated by the accountant from the target epsilon, with the sampling rate q credited
    only in central mode (cloud.round_engine.RoundEngine.amplified)."""
    if config.dp is DpMode.NONE:
        return 0.0
    if config.noise_multiplier is not None:
        return config.noise_multiplier
    if config.target_epsilon is None:
        raise ValueError(f"--dp {config.dp.value} needs --target-epsilon or --noise-multiplier")
    q = config.sampling_rate if config.dp is DpMode.CENTRAL else 1.0
    return calibrate_discrete_noise_multiplier(config.target_epsilon, q, config.rounds, config.delta)


def run_experiment(config: ExperimentConfig, run_dir: Path, broker: str = "auto",
                   status=print, on_round_end=None, broker_host: str | None = None, aggregators: int = 1,
                   aggregator_processes: bool = False) -> dict:
    """Run and write metrics.json, report.md and accuracy.png into run_dir; return the metrics.

    broker: host:port of a running broker, or one to start: "mosquitto", "amqtt", "auto" (simulator_broker_kind).
    broker_host (--engine ray): the broker's address as the Ray workers dial it (None: the one the driver uses).
    aggregators: 1, the single aggregator; K > 1, a coordinator and K workers (needs mosquitto's $share), threads
    of this process or, with aggregator_processes, `python -m cloud aggregate-worker` processes."""
    started = time.monotonic()
    kind = broker if broker in ("auto", "mosquitto", "amqtt") else None
    if aggregators > 1 and kind == "amqtt":
        raise ValueError(f"--aggregators {aggregators} shares updates among workers with MQTT shared subscriptions, "
                         f"which the embedded amqtt broker does not serve; pass --broker mosquitto")
    if aggregators > 1 and kind == "auto":
        kind = "mosquitto"
    if aggregators > 1 and config.engine != "local":
        raise ValueError(f"--aggregators {aggregators} runs with the local engine only; drop --engine "
                         f"{config.engine} or run one aggregator")
    if kind is None:
        host, port = parse_broker_url(broker)
        _probe_broker(host, port)  # fail before minutes of training, not after
    else:
        kind = simulator_broker_kind(kind, config.devices)
    with contextlib.ExitStack() as stack:
        ray_cpus = stack.enter_context(_engine_session(config))  # a wrong --ray-address fails here, before training
        run_dir.mkdir(parents=True, exist_ok=True)
        z = resolve_noise_multiplier(config)
        art = prepare_cloud(config, progress=status)
        if kind is None:
            broker_name = f"{host}:{port}"
        else:
            started_broker = stack.enter_context(start_fleet_broker(kind, config.devices))
            host, port = started_broker.host, started_broker.port
            broker_name = f"{'embedded amqtt' if kind == 'amqtt' else kind} {host}:{port}"
        status(regime_line(config))
        status(f"federating over MQTT at {broker_name}")
        if aggregators > 1:
            status(f"{aggregators} aggregator workers ({'processes' if aggregator_processes else 'threads'}) share "
                   f"the updates (an MQTT shared subscription)")
        if ray_cpus is None and (processes := device_process_count(config.device_processes, config.devices)) > 1:
            status(f"devices in {processes} processes of their own (--device-processes; their logs: "
                   f"{run_dir / 'devices'}), the aggregator in this one")
        if ray_cpus is None:
            outcome = run_federation(config, art, host, port, run_dir, z, on_round_end=on_round_end,
                                     aggregators=aggregators, aggregator_processes=aggregator_processes)
        else:
            from simulator.ray_federation import run_federation_on_ray

            status(f"devices on {ray_cpus} Ray actors ({config.ray_address or 'local cluster'}), dialling the "
                   f"broker at {broker_host or host}:{port}")
            outcome = run_federation_on_ray(config, art, host, port, run_dir, z, ray_cpus, broker_host,
                                            on_round_end=on_round_end)
    metrics = collect_metrics(config, art, outcome, z, broker_name, time.monotonic() - started)
    write_metrics(run_dir, metrics)
    if outcome.history:
        plot_accuracy(run_dir, outcome.history, art.teacher_accuracy)
    write_report(run_dir, metrics)
    return metrics


def _engine_session(config: ExperimentConfig) -> contextlib.AbstractContextManager[int | None]:
    """The Ray session of --engine ray (its CPUs), or nothing for the local engine (None)."""
    if config.engine != "ray":
        return contextlib.nullcontext()
    from simulator.ray_cluster import RaySettings, ray_session

    return ray_session(RaySettings(config.ray_address))


def shard_quality(art: CloudArtifacts, final_weights: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per planned shard, on the held-out data of the devices that got it: the shard's own accuracy,
    the cloud-distilled student's and the federated student's (does a weak shard help or harm?)."""
    student = TrainableStudent.from_bytes(art.student_program)
    out: dict[str, dict[str, float]] = {}
    for sid in art.shards:
        held = [h for a, h in zip(art.assignments, art.split.device_holdout) if a.shard_id == sid and len(h)]
        if not held:
            continue
        x = np.concatenate([h.x for h in held])
        y = np.concatenate([h.y for h in held])
        shard_acc = float(np.mean(np.argmax(ShardRunner.from_bytes(art.shards[sid]).logits(x), 1) == y))
        accs = {}
        for name, weights in (("cloud_distilled", art.cloud_distilled_weights), ("federated", final_weights)):
            student.set_weights(weights)
            accs[name] = student.accuracy(x.reshape(len(x), -1), y)
        out[sid] = {"device_holdout_examples": len(y), "shard_device_accuracy": shard_acc,
                    "cloud_distilled_device_accuracy": accs["cloud_distilled"],
                    "federated_device_accuracy": accs["federated"]}
    return out


def regime_line(config: ExperimentConfig) -> str:
    """What the devices know and where the federation starts, in one line."""
    labels = ("devices hold no labels (meters): the shard's arg-max and logits are their only supervisor"
              if config.labelled_fraction == 0 else f"devices hold labels for {config.labelled_fraction:.0%} of "
              f"their samples")
    start = "from the cloud-distilled student" if config.warm_start else "from a fresh student (--cold-start)"
    shift = f"; every device's data shifted at {config.device_shift:g}" if config.device_shift else ""
    augment = (f"; the cloud trains on random shifts at {config.cloud_augment:g}" if config.cloud_augment else "")
    return f"{labels}; federating {start}{shift}{augment}"


AMQTT_MAX_DEVICES = 200  # beyond this the pure-Python broker dominates a round's time


def simulator_broker_kind(kind: str, devices: int) -> str:
    """The broker `--broker auto|mosquitto|amqtt` starts for a fleet of `devices`; BrokerError names the fix."""
    if kind == "auto":
        kind = "amqtt" if devices <= AMQTT_MAX_DEVICES else "mosquitto"
    if kind == "mosquitto" and mosquitto_binary() is None:
        raise BrokerError(f"{devices} devices need mosquitto (the embedded amqtt broker is for up to "
                          f"{AMQTT_MAX_DEVICES}), and it is not installed: apt-get install mosquitto, or pass "
                          f"--broker host:port of a running broker")
    return kind


def start_fleet_broker(kind: str, devices: int) -> MosquittoBroker | EmbeddedBroker:
    """A loopback broker of `kind` for `devices` clients (the open-file limit raised for them first)."""
    raise_open_file_limit(devices + 256)  # the broker inherits it: one descriptor per client, and its own
    return MosquittoBroker() if kind == "mosquitto" else EmbeddedBroker()


def _probe_broker(host: str, port: int) -> None:
    import socket

    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise ConnectionError(f"no MQTT broker answers at {host}:{port} ({exc}); start one "
                              f"(mosquitto -p {port}) or omit --broker to use the embedded amqtt broker") from exc


def collect_metrics(config: ExperimentConfig, art: CloudArtifacts, out: FederationOutcome, z: float,
                    broker_name: str, wall: float) -> dict:
    """The metrics.json contents (issue 2's list, plus per-shard and per-round detail)."""
    by_device = {a.device_id: a for a in art.assignments}
    train_flops = 3 * art.student_flops_per_sample  # forward + backward ~ 3x forward
    local_flops = {d: int(a.flops_per_epoch + train_flops * len(data))
                   for (d, a), data in zip(by_device.items(), art.split.devices)}
    shards = {}
    for sid, blob in art.shards.items():
        chk = art.shard_checks[sid]
        k = next(a.k for a in art.assignments if a.shard_id == sid)
        shards[sid] = {"exit": k, "bytes": len(blob), "top1_agreement": chk.top1_agreement,
                       "keras_accuracy": chk.float_accuracy, "tflite_accuracy": chk.accuracy,
                       "devices": sum(a.shard_id == sid for a in art.assignments)}
    for sid, row in shard_quality(art, out.final_weights).items():
        shards[sid].update(row)
    final = out.history[-1] if out.history else {}
    cloud = fleet_evaluator(art.student_program, art)
    cloud_only, distilled = cloud(art.cloud_only_weights), cloud(art.cloud_distilled_weights)
    return {
        "teacher_accuracy": art.teacher_accuracy,
        "teacher_exit_accuracies": art.exit_accuracies,
        "teacher_params": art.teacher_params,
        "student_accuracy": final.get("accuracy", float("nan")),
        "student_device_accuracy": final.get("device_accuracy", float("nan")),
        "teacher_device_accuracy": art.teacher_device_accuracy,
        "cloud_only_accuracy": cloud_only["accuracy"],
        "cloud_only_device_accuracy": cloud_only.get("device_accuracy", float("nan")),
        "cloud_distilled_accuracy": distilled["accuracy"],
        "cloud_distilled_device_accuracy": distilled.get("device_accuracy", float("nan")),
        "test_examples": len(art.split.test),
        "device_labels": config.labelled_fraction,
        "device_shift": config.device_shift,
        "cloud_augment": config.cloud_augment,
        "warm_start": config.warm_start,
        "device_sampling": None if art.split.sampling is None else asdict(art.split.sampling),
        "dirichlet_alpha": config.dirichlet_alpha,
        "student_params": int(sum(w.size for w in art.student_weights.values())),
        "student_parameters": int(sum(w.size for w in art.student_weights.values())),
        "update_bits": config.update_bits,
        "update_bytes_limit": int(sum(w.size for w in art.student_weights.values())) * config.update_bits / 8,
        "update_bytes_per_device_round": update_wire_bytes(out.device_traffic, config.rounds),
        "model_bits": config.model_bits,
        "model_bytes_limit": int(sum(w.size for w in art.student_weights.values())) * config.model_bits / 8,
        "model_step_bytes": model_step_wire_bytes(out.device_traffic),
        "rounds": len(out.history),
        "devices": config.devices,
        **traffic_summary(out.device_traffic, config.rounds),
        **fedavg_bytes(art.teacher_params, config.devices, config.rounds),
        "dp_mode": config.dp.value,
        "noise_seeded": config.insecure_seeded_noise,
        "sampling_rate": config.sampling_rate,
        "noise_multiplier": z,
        "clip": config.training.clip,
        "training": asdict(config.training),
        "epsilon": out.epsilon if out.epsilon is not None else (0.0 if config.dp is DpMode.NONE else None),
        "delta": config.delta,
        "local_flops_per_epoch": local_flops,
        "plan": {a.device_id: a.shard_id for a in art.assignments},
        "shards": shards,
        "history": out.history,
        "broker": broker_name,
        "engine": config.engine,
        "device_processes": device_process_count(config.device_processes, config.devices)
        if config.engine == "local" else None,
        "wall_seconds": wall,
        "setup_seconds": out.setup_seconds,
        "seed": config.seed,
    }


def federation_verdict(m: dict) -> str:
    """One line: what the federation added over the student it started from (one seed; spread needs --seeds)."""
    if not m["warm_start"]:
        return "federation from a cold start: compare it with the cloud-distilled student above"
    test = (m["student_accuracy"] - m["cloud_distilled_accuracy"]) * m["test_examples"]
    device = 100 * (m["student_device_accuracy"] - m["cloud_distilled_device_accuracy"])
    return (f"federation minus its start (the cloud-distilled student): {test:+.0f} test examples, "
            f"{device:+.1f} points on the devices' own data. One seed: whether that exceeds the spread, see "
            f"`python -m simulator compare --methods students --seeds 0,1,2,3,4` (README: it pays only where "
            f"the devices' data differs from the cloud's)")

