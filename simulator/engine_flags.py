"""--engine, --ray-address, --device-processes and --broker-host: where `python -m simulator` runs its devices,
and the fan-out the in-process verbs (dp-scaling, compare) hand their clients' fits to."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from simulator.device_processes import AUTO_SPLIT_DEVICES
from simulator.in_process import SEQUENTIAL, FanOut
from simulator.ray_cluster import ENGINES, RaySettings, ray_session


def add_engine_flags(parser: argparse.ArgumentParser, over_mqtt: bool) -> None:
    """The engine flags of a verb; over_mqtt (run): also --broker-host, the address Ray workers dial."""
    ray = ("on a Ray cluster, each actor hosting a group of the devices (DeviceAgents over MQTT; the aggregator "
           "stays here)" if over_mqtt else "on a Ray cluster, batches of the virtual devices' fits per actor, the "
           "updates aggregated in the local order (the same result for a seed)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help=f"local: every device in this process; ray: {ray}")
    parser.add_argument("--ray-address",
                        help="--engine ray: HOST:PORT of a running Ray cluster's head (`ray start --head`), or auto "
                             "(default: start a local cluster with this machine's CPUs and a 256 MiB object store)")
    if over_mqtt:
        parser.add_argument("--device-processes", type=device_processes, default=None, metavar="P",
                            help="--engine local: processes that host the devices, each with its own MQTT loop and "
                                 "worker pool, the aggregator staying in this one (simulator.device_processes; "
                                 f"with a broker the simulator starts or any other over TCP); auto: 1 below "
                                 f"{AUTO_SPLIT_DEVICES} devices, else one per core (default: auto)")
        parser.add_argument("--broker-host",
                            help="--engine ray: the broker's host as the Ray workers dial it, when it differs from "
                                 "--broker's (a cluster of several machines needs an address they all reach; the "
                                 "embedded broker listens on 127.0.0.1 only) (default: --broker's host)")


def device_processes(text: str) -> int | None:
    """--device-processes: `auto` (None) or a whole number of at least 1."""
    if text == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be auto or a whole number of at least 1, got {text!r}")
    return count


def engine_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the engine flags together, or None."""
    if args.engine != "ray" and args.ray_address is not None:
        return "--ray-address names the Ray cluster of --engine ray: add --engine ray, or drop --ray-address"
    if args.engine != "local" and getattr(args, "device_processes", None) is not None:
        return "--device-processes splits the local engine's devices over processes; --engine ray places them on " \
               "its actors: drop --device-processes"
    if args.engine != "ray" and getattr(args, "broker_host", None) is not None:
        return "--broker-host is the address Ray workers dial: add --engine ray, or drop --broker-host"
    started_here = getattr(args, "broker", None) in (None, "auto", "mosquitto", "amqtt")
    if getattr(args, "broker_host", None) is not None and started_here:
        return "--broker-host needs --broker HOST:PORT (a broker the simulator starts listens on 127.0.0.1 only): " \
               "run mosquitto where the workers reach it and pass --broker HOST:PORT"
    return None


@contextlib.contextmanager
def fan_out_session(args: argparse.Namespace) -> Iterator[FanOut]:
    """The fan-out of --engine: SEQUENTIAL, or a RayFanOut with one actor per CPU of the session it opens."""
    if args.engine != "ray":
        yield SEQUENTIAL
        return
    from simulator.ray_fit import RayFanOut

    with ray_session(RaySettings(args.ray_address)) as cpus:
        fan_out = RayFanOut(cpus)
        try:
            yield fan_out
        finally:
            fan_out.close()
