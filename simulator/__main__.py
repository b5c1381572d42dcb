"""`python -m simulator <verb>`: a whole DMSKD fleet on this machine, its baselines, and the files other roles read.

Conventions (defaults in --help, one-line errors, exit 1 for a failed run, 2 for a wrong command
line): edge/cli.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from cloud.rejections import rejected_total
from edge.chunking import DEFAULT_CHUNK_LIMIT
from edge.cli import (
    EXIT_OK,
    SEED_MAX,
    CliParser,
    add_log_level,
    configure_logging,
    fail,
    float_between,
    non_negative_float,
    positive_float,
    positive_int,
    positive_int_list,
    probability,
    seed_int,
    topic_name,
    usage,
)
from edge.plan import TrainingSettings, parse_label_fraction
from simulator import bench_scale_command, bits_study_command, chaos_command, noise_study_command
from simulator.broker import BrokerError
from simulator.cli_inputs import check_inputs, simulator_broker
from simulator.data import TEST_FRACTION
from simulator.device_pool import DeviceSampling
from simulator.device_processes import DeviceProcessFailed
from simulator.device_shift import PARTS
from simulator.engine_flags import add_engine_flags, engine_problem

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """--alpha, --tau, --lr, --local-epochs, --batch-size, --clip: edge.plan.TrainingSettings, its defaults."""
    d = TrainingSettings()
    parser.add_argument("--alpha", type=float_between(0.0, 1.0), default=d.alpha,
                        help="weight of the hard-target cross-entropy against the KL to the shard, in [0, 1]")
    parser.add_argument("--tau", type=positive_float, default=d.tau, help="distillation temperature")
    parser.add_argument("--lr", type=positive_float, default=d.lr, help="the student's local SGD learning rate")
    parser.add_argument("--local-epochs", type=positive_int, default=d.local_epochs,
                        help="local training epochs per round")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                        help="the student program's fixed training batch")
    parser.add_argument("--clip", type=positive_float, default=d.clip, help="L2 clip norm C of a device update")


def seed_list(text: str) -> list[int]:
    """argparse type: comma-separated integer seeds in 0..2**32 - 1, such as 0,1,2,3,4."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2,3,4, got {text!r}") from None
    if not all(0 <= s <= SEED_MAX for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers in 0..{SEED_MAX}, got {text!r}")
    return seeds


def shift_parts(text: str) -> tuple[str, ...]:
    """argparse type: a comma-separated subset of the device shift's components."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(PARTS)}, got {text!r}")
    return parts


def device_labels(text: str) -> float:
    """argparse type: none, all, or the fraction of every device's samples that carry labels."""
    try:
        return parse_label_fraction(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cloud_fraction(text: str) -> float:
    """argparse type: the cloud's share of the data set, in (0, 1 - the test split's share)."""
    value = positive_float(text)
    if not value < 1.0 - TEST_FRACTION:
        raise argparse.ArgumentTypeError(f"must be below {1.0 - TEST_FRACTION:g} (the test split takes "
                                         f"{TEST_FRACTION:g}), got {text}")
    return value


def add_task_flags(parser: argparse.ArgumentParser) -> None:
    """--task and --data: which data set the run uses."""
    parser.add_argument("--task", choices=["digits", "plaid", "acsf1", "italy-power"], default="digits",
                        help="bundled data: scikit-learn's digits, or a smart-meter task from sktime's wheel "
                             "(PLAID appliances, ACSF1 appliance power, ItalyPowerDemand daily load)")
    parser.add_argument("--data", type=Path,
                        help="a data set the user has (MNIST IDX or .npz, CIFAR-10 pickles, Tiny-ImageNet, an image "
                             "folder, meter readings as CSV; simulator.loaders) (default: the bundled digits)")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """How the data is split and labelled, and where the federation starts (simulator.config fields)."""
    add_task_flags(parser)
    parser.add_argument("--device-labels", type=device_labels, default="none",
                        help="labels a device holds: none (a meter: the shard is its only supervisor), all, "
                             "or a fraction such as 0.1")
    parser.add_argument("--cloud-fraction", type=cloud_fraction, default=0.35,
                        help="share of the data set in the cloud's labelled proxy split")
    parser.add_argument("--device-shift", type=float_between(0.0, 1.0), default=0.0,
                        help="strength in [0, 1] of every device's own transform of its data (gain, offset, "
                             "translation, noise, one missing class); the cloud's data stays as it is")
    parser.add_argument("--shift-parts", type=shift_parts, default=",".join(PARTS),
                        help="which components of the device shift apply (comma-separated)")
    parser.add_argument("--cloud-augment", type=float_between(0.0, 1.0), default=0.0,
                        help="strength in [0, 1] of random shifts of the same family the cloud trains its teacher "
                             "and cloud students on (2 extra copies of its data); 0: none")
    parser.add_argument("--teacher-epochs", type=positive_int, default=30,
                        help="epochs the cloud trains the multi-exit teacher for")
    parser.add_argument("--cold-start", action="store_true",
                        help="federate from a fresh student instead of the cloud-distilled one")
    parser.add_argument("--dirichlet-alpha", type=positive_float, default=1.0,
                        help="non-IID-ness of the device split: labels ~ Dirichlet(alpha); smaller = more skewed")
    parser.add_argument("--min-samples-per-device", type=positive_int, default=8,
                        help="partition: the split redraws until every device holds at least this many examples")
    parser.add_argument("--device-sampling", choices=[m.value for m in DeviceSampling], default="auto",
                        help="how devices get their data: partition (disjoint Dirichlet shares of the device part of "
                             "the data; the data limits the fleet), pool (every device draws --samples-per-device "
                             "examples with replacement by its own Dirichlet label mix: any fleet size), auto "
                             "(partition when the device part of the data holds as many examples per device as pool "
                             "sampling would draw, else pool; metrics.json records the choice)")
    parser.add_argument("--samples-per-device", type=positive_int, default=32,
                        help="pool sampling: training examples K every device draws, plus round(K/4) (at least 1) "
                             "held-out ones from a pool no device trains on; auto's threshold")


def add_noise_flag(parser: argparse.ArgumentParser) -> None:
    """--insecure-seeded-noise: the only way to make DP noise reproducible (and so predictable)."""
    parser.add_argument("--insecure-seeded-noise", action="store_true",
                        help="INSECURE, for tests and reproducible studies: draw the DP noise from --seed (fast, "
                             "reproducible, and subtractable by anyone who knows the seed); default: the exact "
                             "discrete Gaussian sampler over the operating system's entropy")


def data_config(args: argparse.Namespace) -> dict:
    """The ExperimentConfig fields add_data_flags sets."""
    return {"task": args.task, "data": None if args.data is None else str(args.data),
            "labelled_fraction": args.device_labels, "cloud_fraction": args.cloud_fraction,
            "warm_start": not args.cold_start, "device_shift": args.device_shift,
            "cloud_augment": args.cloud_augment, "shift_parts": args.shift_parts,
            "teacher_epochs": args.teacher_epochs,
            "dirichlet_alpha": args.dirichlet_alpha, "min_samples_per_device": args.min_samples_per_device,
            "device_sampling": DeviceSampling.parse(args.device_sampling),
            "samples_per_device": args.samples_per_device}


def training_from(args: argparse.Namespace) -> TrainingSettings:
    """The TrainingSettings the flags of add_training_flags name (ValueError names a bad value)."""
    return TrainingSettings(alpha=args.alpha, tau=args.tau, lr=args.lr, local_epochs=args.local_epochs,
                            batch_size=args.batch_size, clip=args.clip)


def add_update_bits_flag(parser: argparse.ArgumentParser) -> None:
    """--update-bits, --model-bits: the widths on the wire, up (updates) and down (the global model's step);
    --chunk-limit: the largest MQTT message."""
    parser.add_argument("--update-bits", type=int, choices=(32, 8, 4, 2), default=8,
                        help="bits per value of a device's update: 32 sends float32, 8, 4 and 2 send unbiased "
                             "stochastically rounded codes with a scale and zero point per tensor (default 8)")
    parser.add_argument("--model-bits", type=int, choices=(32, 8, 4, 2), default=8,
                        help="bits per value of the global model's step from the version a device holds "
                             "(edge.model_step); 32 sends the whole float32 model every round (default 8)")
    parser.add_argument("--chunk-limit", type=int, default=DEFAULT_CHUNK_LIMIT, metavar="BYTES",
                        help="largest MQTT message on the wire: longer ones go as chunks (edge.chunking). A fleet "
                             "with TFLite-Micro meters uses their network buffer, e.g. 4096 (default "
                             f"{DEFAULT_CHUNK_LIMIT}, AWS IoT Core's cap)")


def add_round_closing_flags(parser: argparse.ArgumentParser) -> None:
    """--quorum and --deadline: when the aggregator closes a round (cloud.round_closing)."""
    parser.add_argument("--quorum", type=float_between(1e-6, 1.0), default=1.0,
                        help="close a round once this fraction of its cohort was accepted (it also closes when "
                             "every cohort device still online has answered, or at the deadline)")
    parser.add_argument("--deadline", type=positive_float, default=120.0,
                        help="seconds a round waits at most for devices that look online")


def build_parser() -> argparse.ArgumentParser:
    """The `python -m simulator` parser: run, teacher, dp-scaling, compare, prepare, audit."""
    p = CliParser(prog="python -m simulator", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("run", help="train the teacher, plan and export shards, federate the student over MQTT",
                         description="A whole DMSKD fleet on this machine over a real MQTT broker.")
    run.add_argument("--devices", type=positive_int, default=10, help="simulated devices")
    run.add_argument("--rounds", type=positive_int, default=10, help="federated rounds")
    run.add_argument("--seed", type=seed_int, default=0, help="seed of the split, the teacher and the devices")
    run.add_argument("--dp", choices=["none", "local", "central"], default="none",
                     help="differential privacy: noise added by each device (local), by the aggregator (central)")
    run.add_argument("--target-epsilon", type=positive_float,
                     help="calibrate the noise multiplier to this epsilon; --dp local|central needs it or "
                          "--noise-multiplier (default: none)")
    run.add_argument("--noise-multiplier", type=non_negative_float,
                     help="use this noise multiplier z (default: calibrated from --target-epsilon)")
    run.add_argument("--delta", type=probability, default=1e-5, help="DP delta of the reported epsilon")
    run.add_argument("--sampling-rate", type=float_between(1e-6, 1.0), default=1.0,
                     help="q: each round the aggregator samples every device with probability q (Poisson, OS "
                          "entropy); central DP is credited the amplification, local DP is not (the aggregator "
                          "sees who sent)")
    add_round_closing_flags(run)
    add_update_bits_flag(run)
    add_training_flags(run)
    add_data_flags(run)
    add_noise_flag(run)
    run.add_argument("--broker", type=simulator_broker, default="auto",
                     help="'mosquitto' (start one: C, epoll; for large fleets), 'amqtt' (start the embedded "
                          "Python broker), 'auto' (amqtt up to 200 devices, mosquitto beyond; the default), "
                          "or host:port of a running broker")
    run.add_argument("--aggregators", type=positive_int, default=1,
                     help="aggregators: 1, the single aggregator; K > 1, a coordinator and K workers (each its own "
                          "MQTT client) that share the updates through an MQTT shared subscription (needs mosquitto)")
    run.add_argument("--aggregator-processes", action="store_true",
                     help="run the --aggregators workers as `python -m cloud aggregate-worker` processes (cores of "
                          "their own; unseeded rounding) instead of threads of this process")
    run.add_argument("--run-dir", type=Path, help="where outputs go (default: runs/<YYYYmmdd-HHMMSS>-<dp>)")
    add_engine_flags(run, over_mqtt=True)
    teacher = sub.add_parser("teacher", help="train the multi-exit teacher on the cloud split and save it")
    teacher.add_argument("--out", type=Path, required=True, help="teacher directory to write")
    teacher.add_argument("--epochs", type=positive_int, default=30, help="training epochs")
    teacher.add_argument("--seed", type=seed_int, default=0, help="seed of the split and the training")
    add_task_flags(teacher)
    scaling = sub.add_parser("dp-scaling", help="accuracy against fleet size at a fixed epsilon (in-process)")
    scaling.add_argument("--fleet-sizes", type=positive_int_list, default="10,100,1000",
                         help="comma-separated device counts")
    scaling.add_argument("--rounds", type=positive_int, default=10, help="federated rounds per fleet size")
    scaling.add_argument("--target-epsilon", type=positive_float, default=8.0, help="epsilon of the DP rows")
    scaling.add_argument("--delta", type=probability, default=1e-5, help="DP delta")
    add_training_flags(scaling)
    scaling.add_argument("--samples-per-device", type=positive_int, default=32,
                         help="samples each simulated device draws from the device pool")
    scaling.add_argument("--seed", type=seed_int, default=0,
                         help="seed of the split, the teacher and the devices")
    scaling.add_argument("--out", type=Path, default=Path("runs/dp-scaling"), help="directory for the report")
    add_noise_flag(scaling)
    add_engine_flags(scaling, over_mqtt=False)
    noise_study_command.add_parser(sub, seed_list, add_training_flags)
    bits_study_command.add_parser(sub, seed_list, add_data_flags)
    chaos_command.add_parser(sub)
    bench_scale_command.add_parser(sub)
    comp = sub.add_parser("compare", help="Table 1: FedAvg, FedCompress, FedKD, DP-FedAvg, DMSKD (in-process)")
    comp.add_argument("--devices", type=positive_int, default=10, help="simulated devices")
    comp.add_argument("--rounds", type=positive_int, default=10, help="federated rounds of every method")
    comp.add_argument("--seed", type=seed_int, default=0, help="seed of the split, the teacher and the devices")
    comp.add_argument("--target-epsilon", type=positive_float, default=8.0, help="epsilon of the DP rows (RDP, q = 1)")
    comp.add_argument("--delta", type=probability, default=1e-5, help="DP delta of the DP rows")
    add_training_flags(comp)
    add_data_flags(comp)
    add_noise_flag(comp)
    comp.add_argument("--methods", default="all",
                      help="comma-separated rows to run (all; students = every row but the three trained on the "
                           "full teacher; or keys: teacher, central, cloud-only, cloud-distilled, fedavg, "
                           "fedcompress, dp-fedavg, fedavg-student, fedkd, dmskd-no-kd, dmskd, dmskd-dp)")
    comp.add_argument("--seeds", type=seed_list,
                      help="run every seed of a comma-separated list and report mean, std and the paired "
                           "difference against DMSKD (default: --seed only)")
    comp.add_argument("--out", type=Path, default=Path("runs/compare"), help="directory for compare.json, .md, .png")
    add_engine_flags(comp, over_mqtt=False)
    prep = sub.add_parser("prepare", help="write a fleet bundle and per-device data for separate processes")
    prep.add_argument("--out", type=Path, required=True,
                      help="directory: DIR/bundle (python -m cloud aggregate), DIR/devices/<id>.npz "
                           "(python -m edge run), DIR/test.npz")
    prep.add_argument("--devices", type=positive_int, default=10, help="devices of the fleet")
    prep.add_argument("--rounds", type=positive_int, default=10, help="federated rounds")
    prep.add_argument("--seed", type=seed_int, default=0, help="seed of the split, the teacher and the plans")
    prep.add_argument("--fleet", type=topic_name, default="demo", help="fleet name: the topic prefix dmskd/<fleet>/")
    add_round_closing_flags(prep)
    add_update_bits_flag(prep)
    add_data_flags(prep)
    add_audit_verb(sub)
    for verb in sub.choices.values():
        add_log_level(verb)
    return p


def add_audit_verb(sub: argparse._SubParsersAction) -> None:
    """The `audit` verb: membership inference and the canary epsilon lower bound (simulator.audit_command)."""
    audit = sub.add_parser("audit", help="membership inference and an epsilon lower bound from canaries, beside "
                                         "the accountant's epsilon (in-process)",
                           description="Empirical privacy audit: a loss-threshold membership attack on the final "
                                       "global student of DP off, central and local federations, and an epsilon "
                                       "lower bound from canary updates in one round's release.")
    audit.add_argument("--dp", choices=["none", "local", "central", "all"], default="all",
                       help="which DP modes to audit (all: none, central and local)")
    audit.add_argument("--target-epsilon", type=positive_float, default=8.0,
                       help="epsilon of the DP federations over all rounds (calibrates z, q = 1)")
    audit.add_argument("--delta", type=probability, default=1e-5, help="DP delta of every epsilon")
    audit.add_argument("--devices", type=positive_int, default=10, help="simulated devices")
    audit.add_argument("--rounds", type=positive_int, default=10, help="federated rounds")
    audit.add_argument("--trials", type=positive_int, default=2000,
                       help="canary trials per DP mode and noise origin (vectorised sampler)")
    audit.add_argument("--secure-trials", type=int, default=100,
                       help="canary trials per DP mode with the exact sampler over OS entropy (~0.3-0.6 s each); "
                            "0: skip")
    audit.add_argument("--seeds", type=seed_list, default="0",
                       help="comma-separated seeds of the split, teacher and devices; the canary audit uses the first")
    audit.add_argument("--out", type=Path, default=Path("runs/audit"), help="directory for audit.json, .md, .png")
    add_training_flags(audit)
    add_data_flags(audit)
    add_noise_flag(audit)


def audit(args: argparse.Namespace) -> int:
    """`audit` verb: audit.json, audit.md and audit.png in --out."""
    from cloud.strategy import DpMode
    from simulator.audit_command import MODES, AuditSettings, run_audit
    from simulator.config import ExperimentConfig

    modes = MODES if args.dp == "all" else (DpMode.parse(args.dp),)
    try:
        config = ExperimentConfig(devices=args.devices, rounds=args.rounds, seed=args.seeds[0], delta=args.delta,
                                  training=training_from(args), insecure_seeded_noise=args.insecure_seeded_noise,
                                  **data_config(args))
        settings = AuditSettings(config, modes, args.target_epsilon, args.trials, args.secure_trials,
                                 tuple(args.seeds))
    except ValueError as exc:
        return usage(str(exc))
    try:
        report = run_audit(settings, args.out, command=args.command_line, status=lambda s: print(f"· {s}", flush=True))
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    print()
    for row in report["canary"]:
        print(f"  canary {row['dp_mode']:7s} {row['noise']:11s} {row['attacker']:16s} epsilon >= "
              f"{row['epsilon_lower_bound']:.2f}  (accountant {row['accountant_epsilon'] or float('inf'):.2f})")
    for row in report["membership"]:
        print(f"  membership seed {row['seed']} {row['model']:8s} AUC {row['auc']:.3f}  "
              f"precision at recall 1% {row['precision_at_recall']['0.01']:.3f}")
    print(f"\n  wrote {args.out}/audit.md, audit.json, audit.png")
    return EXIT_OK


def prepare(args: argparse.Namespace) -> int:
    """`prepare` verb: bundle for `python -m cloud aggregate`, .npz per device for `python -m edge run`."""
    import numpy as np

    from cloud.fleet_bundle import save_bundle
    from edge.signed_artifact import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, write_signing_keypair
    from simulator.config import ExperimentConfig

    try:
        config = ExperimentConfig(devices=args.devices, rounds=args.rounds, seed=args.seed, deadline_s=args.deadline,
                                  quorum_fraction=args.quorum, update_bits=args.update_bits,
                                  model_bits=args.model_bits, chunk_limit=args.chunk_limit,
                                  **data_config(args))
    except ValueError as exc:
        return usage(str(exc))
    from simulator.artifacts import prepare_cloud  # TensorFlow: only once the flags are known to be good
    from simulator.federation import fleet_bundle

    try:
        art = prepare_cloud(config, progress=print)
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    bundle = fleet_bundle(config, art, 0.0, args.fleet)
    save_bundle(args.out / "bundle", bundle)
    write_signing_keypair(args.out / PRIVATE_KEY_FILE, args.out / PUBLIC_KEY_FILE)
    (args.out / "devices").mkdir(parents=True, exist_ok=True)
    for plan, data in zip(bundle.plans, art.split.devices):
        np.savez(args.out / "devices" / f"{plan.device}.npz", x=data.x, y=data.visible_labels())
    np.savez(args.out / "test.npz", x=art.split.test.x, y=art.split.test.y)
    print(f"wrote {args.out}/bundle, {args.out}/devices/*.npz, {args.out}/test.npz, the fleet's signing key "
          f"{args.out}/{PRIVATE_KEY_FILE} (the aggregator's) and {args.out}/{PUBLIC_KEY_FILE} (every device's)")
    return EXIT_OK


def dp_scaling(args: argparse.Namespace) -> int:
    """`dp-scaling` verb: accuracy against fleet size for none / central / local DP."""
    from simulator.artifacts import prepare_cloud
    from simulator.config import ExperimentConfig
    from simulator.dp_scaling import run_scaling
    from simulator.engine_flags import fan_out_session
    from simulator.ray_cluster import RayUnavailable

    try:
        training = training_from(args)
    except ValueError as exc:
        return usage(str(exc))
    try:
        with fan_out_session(args) as fan_out:  # a wrong --ray-address fails here, before training
            art = prepare_cloud(ExperimentConfig(seed=args.seed, training=training), progress=print)
            points = run_scaling(art, args.fleet_sizes, args.rounds, args.target_epsilon, args.delta,
                                 training, args.samples_per_device, args.seed, args.out,
                                 insecure_seeded_noise=args.insecure_seeded_noise, fan_out=fan_out)
    except RayUnavailable as exc:
        return fail(str(exc))
    for p in points:
        print(f"  {p.dp_mode:8s} {p.fleet_size:6d} devices  z={p.noise_multiplier:.3f}  "
              f"epsilon={p.epsilon:.2f}  accuracy={p.accuracy:.4f}")
    print(f"wrote {args.out}/dp_scaling.md, dp_scaling.png")
    return EXIT_OK


def compare(args: argparse.Namespace) -> int:
    """`compare` verb: every method on one split (or several seeds); compare.json, .md, .png in --out."""
    from dataclasses import replace

    from simulator.compare import METHODS, STUDENT_METHODS, CompareSettings
    from simulator.config import ExperimentConfig
    from simulator.engine_flags import fan_out_session
    from simulator.ray_cluster import RayUnavailable
    from simulator.seed_study import run_seed_study

    named = {"all": tuple(METHODS), "students": STUDENT_METHODS}
    methods = named.get(args.methods) or tuple(m.strip() for m in args.methods.split(","))
    seeds = args.seeds or [args.seed]
    try:
        training = training_from(args)
        configs = [ExperimentConfig(devices=args.devices, rounds=args.rounds, seed=seed, delta=args.delta,
                                    training=training, **data_config(args)) for seed in seeds]
        settings = [CompareSettings(rounds=args.rounds, seed=seed, target_epsilon=args.target_epsilon,
                                    delta=args.delta, training=training, methods=methods,
                                    insecure_seeded_noise=args.insecure_seeded_noise) for seed in seeds]
    except ValueError as exc:
        return usage(str(exc))
    try:
        with fan_out_session(args) as fan_out:  # the student rows' fits; the Keras rows train here
            summary = run_seed_study(configs, [replace(s, fan_out=fan_out) for s in settings], args.out,
                                     command=args.command_line)
    except (ValueError, FileNotFoundError, RayUnavailable) as exc:
        return fail(str(exc))
    print()
    print(summary)
    print(f"\n  wrote {args.out}/compare.md, compare.json, compare.png" +
          (", compare_seeds.md, compare_seeds.json" if len(seeds) > 1 else ""))
    return EXIT_OK


def save_teacher(args: argparse.Namespace) -> int:
    """`teacher` verb: train and write a teacher directory (export/teacher_dir.py layout)."""
    from simulator.config import ExperimentConfig

    try:
        config = ExperimentConfig(seed=args.seed, teacher_epochs=args.epochs, task=args.task,
                                  data=None if args.data is None else str(args.data))
    except ValueError as exc:
        return usage(str(exc))
    from export.teacher_dir import save_teacher_dir  # TensorFlow: only once the flags are known to be good
    from simulator.artifacts import train_cloud_teacher

    try:
        _, bundle, test_acc = train_cloud_teacher(config, print)
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    save_teacher_dir(args.out, bundle)
    print(f"wrote {args.out}: exit accuracies (held-out) {[round(a, 4) for a in bundle.exit_accuracies]}, "
          f"test {[round(a, 4) for a in test_acc]}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the verb; exit codes as in edge.cli (0 done, 1 failed, 2 bad command line)."""
    args = build_parser().parse_args(argv)
    args.command_line = "python -m simulator " + shlex.join(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level)
    code = check_inputs(args)
    if code is not None:
        return code
    if hasattr(args, "engine") and (problem := engine_problem(args)) is not None:
        return usage(problem)
    if args.verb == "teacher":
        return save_teacher(args)
    if args.verb == "prepare":
        return prepare(args)
    if args.verb == "dp-scaling":
        return dp_scaling(args)
    if args.verb == "compare":
        return compare(args)
    if args.verb == "audit":
        return audit(args)
    if args.verb == "bits-study":
        return int(args.run(args))
    if args.verb == "noise-study":
        return int(args.run(args))
    if args.verb in ("chaos", "bench-scale"):
        return int(args.run(args))
    if args.dp == "none" and (args.target_epsilon is not None or args.noise_multiplier is not None):
        return usage("--target-epsilon and --noise-multiplier set the DP noise: add --dp local or --dp central, "
                     "or drop them")
    from tqdm import tqdm

    from cloud.round_engine import RoundRecord
    from cloud.strategy import DpMode
    from simulator.config import ExperimentConfig
    from simulator.experiment import federation_verdict, run_experiment

    try:
        training = training_from(args)
        config = ExperimentConfig(devices=args.devices, rounds=args.rounds, seed=args.seed, dp=DpMode.parse(args.dp),
                                  target_epsilon=args.target_epsilon, noise_multiplier=args.noise_multiplier,
                                  delta=args.delta, training=training, insecure_seeded_noise=args.insecure_seeded_noise,
                                  sampling_rate=args.sampling_rate, deadline_s=args.deadline,
                                  quorum_fraction=args.quorum, update_bits=args.update_bits,
                                  model_bits=args.model_bits, chunk_limit=args.chunk_limit, engine=args.engine,
                                  ray_address=args.ray_address, device_processes=args.device_processes,
                                  **data_config(args))
    except ValueError as exc:
        return usage(str(exc))
    run_dir = args.run_dir or Path("runs") / time.strftime(f"%Y%m%d-%H%M%S-{args.dp}")
    bars: list[tqdm] = []

    def on_round(record: RoundRecord) -> None:
        if not bars:
            bars.append(tqdm(total=config.rounds, desc="rounds", unit="round"))
        bars[0].update(1)
        bars[0].set_postfix(acc=f"{record.metrics['accuracy']:.3f}", accepted=len(record.accepted),
                            rejected=len(record.rejected))

    try:
        m = run_experiment(config, run_dir, broker=args.broker, status=lambda s: print(f"· {s}", flush=True),
                           on_round_end=on_round, broker_host=args.broker_host, aggregators=args.aggregators,
                           aggregator_processes=args.aggregator_processes)
    except (ConnectionError, ValueError, FileNotFoundError, BrokerError, DeviceProcessFailed) as exc:
        return fail(str(exc))
    finally:
        for bar in bars:
            bar.close()
    print_summary(m, run_dir)
    print(f"\n  {federation_verdict(m)}")
    return EXIT_OK


def print_summary(m: dict, run_dir: Path) -> None:
    """The results table at the end of a run."""
    rows = [
        ("teacher accuracy", f"{m['teacher_accuracy']:.4f}"),
        ("student accuracy", f"{m['student_accuracy']:.4f}"),
        ("student / teacher", f"{m['student_accuracy'] / m['teacher_accuracy']:.3f}"),
        ("cloud-only / cloud-distilled student (no federation)",
         f"{m['cloud_only_accuracy']:.4f} / {m['cloud_distilled_accuracy']:.4f}"),
        ("device accuracy: teacher / cloud-distilled / federated",
         f"{m['teacher_device_accuracy']:.4f} / {m['cloud_distilled_device_accuracy']:.4f} / "
         f"{m['student_device_accuracy']:.4f}"),
        ("bytes total (DMSKD)", f"{m['bytes_total']:,}"),
        ("bytes total (FedAvg, full teacher)", f"{m['fedavg_bytes_total']:,}"),
        ("DMSKD / FedAvg bytes", f"{m['bytes_total'] / m['fedavg_bytes_total']:.4f}"),
        ("DP mode / z / q / epsilon", f"{m['dp_mode']} / {m['noise_multiplier']:.3f} / {m['sampling_rate']} / "
                                      f"{m['epsilon']}"
                                  + (" (noise SEEDED: --insecure-seeded-noise)" if m["noise_seeded"]
                                     and m["dp_mode"] != "none" else "")),
        ("wall time", f"{m['wall_seconds']:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n  round  accuracy  accepted  rejected    up bytes  down bytes")
    for h, up, down in zip(m["history"], m["bytes_up_per_round"], m["bytes_down_per_round"]):
        print(f"  {h['round']:5d}  {h['accuracy']:8.4f}  {len(h['accepted']):8d}  {rejected_total(h):8d}"
              f"  {up:10,d}  {down:10,d}")
    print()
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    print(f"\n  wrote {run_dir}/metrics.json, report.md, accuracy.png")


if __name__ == "__main__":
    sys.exit(main())
