"""Where `--engine ray` runs: a Ray cluster joined at --ray-address, or a small local one started for the command.

`ray` is imported here, inside `ray_session`, and by the engine modules that need it; nothing else of the simulator
imports it, so `python -m simulator` and the local engine pay neither its import nor its processes. The local
cluster is sized to leave the machine usable: the CPUs of this machine, an object store of
OBJECT_STORE_BYTES (Ray's default is 30% of RAM), no dashboard, no usage reporting, every address on loopback.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

ENGINES = ("local", "ray")
OBJECT_STORE_BYTES = 256 * 2**20  # payloads in flight and the clients' data; Ray spills to disk beyond it
PROBE_TIMEOUT_S = 3.0


class RayUnavailable(ConnectionError):
    """The cluster named by --ray-address cannot be joined, or ray is not installed; the message says the fix."""


@dataclass(frozen=True)
class RaySettings:
    """How to reach the cluster: address None starts a local one with num_cpus CPUs (None: this machine's)."""

    address: str | None = None
    num_cpus: int | None = None
    object_store_bytes: int = OBJECT_STORE_BYTES

    def __post_init__(self) -> None:
        if self.address is not None and not self.address.strip():
            raise ValueError("--ray-address must name a cluster (HOST:PORT of its head, or auto); drop it to start "
                             "a local one")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError("a local Ray cluster needs at least 1 CPU")


def head_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST:PORT` or `ray://HOST:PORT` address; None for `auto` (Ray finds the local head)."""
    if address == "auto":
        return None
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayUnavailable(f"--ray-address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto); pass the "
                             f"address `ray start --head` printed, e.g. 10.0.0.5:6379")
    return host.strip("[]"), int(port)


def probe_head(address: str) -> None:
    """Fail at once, naming the address and the fix, when nothing listens there (ray.init would retry for minutes)."""
    target = head_address(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise RayUnavailable(f"no Ray cluster answers at --ray-address {address} ({exc}); start its head there "
                             f"(`ray start --head --port {target[1]}`) or drop --ray-address to run on a local "
                             f"Ray cluster") from exc


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(f"--engine ray needs the ray package ({exc}); install the pinned stack "
                             f"(pip install -r requirements.txt) or use --engine local") from exc
    return ray


@contextlib.contextmanager
def ray_session(settings: RaySettings) -> Iterator[int]:
    """Join or start the cluster for the duration of the block; yield the CPUs it offers; shut down after."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_enable_metrics_collection", "0")  # no dashboard, so no metrics agent to export to
    if settings.address is not None:
        probe_head(settings.address)
    ray = _import_ray()
    if ray.is_initialized():  # a caller (a test fixture) already holds a session: use it, leave it open
        yield max(1, int(ray.cluster_resources().get("CPU", 1)))
        return
    quiet = {"log_to_driver": False, "configure_logging": False}
    try:
        if settings.address is None:
            ray.init(num_cpus=settings.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=settings.object_store_bytes, _node_ip_address="127.0.0.1", **quiet)
        else:  # a cluster's own settings (CPUs, object store, dashboard) are its head's
            ray.init(address=settings.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = settings.address or "a local cluster"
        raise RayUnavailable(f"could not start Ray on {where}: {exc}; check that its version is this one's "
                             f"(ray {ray.__version__}) or drop --ray-address") from exc
    try:
        yield max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        ray.shutdown()
