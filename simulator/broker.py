"""Start and stop a real MQTT broker on loopback (DESIGN.md §3, §4).

Two brokers, both run as a child process listening on 127.0.0.1 only:

- ``MosquittoBroker``: Debian's mosquitto (2.0.11), the broker for tests, CI and deployments.
- ``ConfiguredMosquitto``: mosquitto with a given configuration file, such as the TLS listener,
  ACL and identities that ``python -m cloud provision`` writes (DIR/broker/mosquitto.conf); it
  listens where that file says.
- ``EmbeddedBroker``: amqtt 0.12.1 (pure Python, MQTT 3.1.1 only), the default when mosquitto
  is not installed; for local demos only: anonymous, no TLS, so it refuses to bind to anything
  but loopback. It runs in a child interpreter rather than a thread so that a busy
  simulator (TensorFlow, the GIL) cannot starve it, a crash cannot take the caller down,
  and nothing is left hanging at interpreter exit. The child exits when its stdin closes,
  so it also goes away if the parent dies.

Both are context managers with ``host``, ``port`` and ``url``::

    with start_broker("auto") as broker:
        client.connect(broker.host, broker.port)

``start_broker`` returns a started broker; entering it again is a no-op, leaving it stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import BinaryIO, Self

__all__ = [
    "BrokerError",
    "ConfiguredMosquitto",
    "DEFAULT_MAX_PACKET_SIZE",
    "EmbeddedBroker",
    "MosquittoBroker",
    "free_port",
    "mosquitto_binary",
    "start_broker",
]

LOOPBACK = "127.0.0.1"

# DMSKD chunks payloads at up to 128 KB (AWS IoT Core's cap); 1 MiB per MQTT packet leaves
# ample room for topic and headers while still refusing absurd packets. mosquitto enforces
# it (the client is disconnected); amqtt 0.12.1 has no such setting and accepts anything up
# to the MQTT maximum (256 MiB), so receivers must enforce their own limit.
DEFAULT_MAX_PACKET_SIZE = 1 << 20

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class BrokerError(RuntimeError):
    """A broker could not be started (the message says why, with the broker's log tail)."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago (bind to port 0, then release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable, or None. Debian puts it in /usr/sbin, which a
    non-root PATH often lacks, so the sbin directories are searched as well."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = os.path.join(directory, "mosquitto")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# Brokers still running at interpreter exit are stopped then.
_RUNNING: weakref.WeakSet[_ProcessBroker] = weakref.WeakSet()
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _RUNNING_LOCK:
        brokers = list(_RUNNING)
    for broker in brokers:
        with contextlib.suppress(Exception):  # best effort at exit
            broker.stop()


class _ProcessBroker:
    """Common part: a broker child process on loopback, ready once a TCP connect succeeds."""

    kind = "?"
    _PORT_ATTEMPTS = 3  # retries with a new port when the auto-chosen one was taken meanwhile

    def __init__(self, port: int | None = None, host: str = LOOPBACK, startup_timeout: float = 15.0) -> None:
        self.host = host
        self._fixed_port = port
        self.port: int = port if port is not None else 0
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None
        self._log_file: BinaryIO | None = None
        self.log_path: Path | None = None

    # -- to be provided by subclasses -----------------------------------------------------
    def _command(self, workdir: Path) -> list[str]:
        raise NotImplementedError

    def _stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self._proc is not None:
            return self
        attempts = 1 if self._fixed_port is not None else self._PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if self._fixed_port is None:
                self.port = free_port(self.host)
            self._workdir = tempfile.mkdtemp(prefix=f"dmskd-{self.kind}-")
            workdir = Path(self._workdir)
            self.log_path = workdir / "broker.log"
            self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in _cleanup
            cmd = self._command(workdir)
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    cwd=workdir,
                    stdin=subprocess.PIPE,
                    stdout=self._log_file,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                )
            except OSError as exc:
                self._cleanup()
                raise BrokerError(f"could not run {self.kind} broker {cmd[0]!r}: {exc}") from exc
            error = self._wait_ready()
            if error is None:
                with _RUNNING_LOCK:
                    _RUNNING.add(self)
                return self
            exited = self._proc.poll() is not None
            tail = self._log_tail()
            self._kill()
            self._cleanup()
            if not (exited and attempt < attempts):
                raise BrokerError(
                    f"{self.kind} broker did not start on {self.host}:{self.port}: {error}\n"
                    f"command: {' '.join(cmd)}\n--- log tail ---\n{tail}"
                )
        raise AssertionError("unreachable")

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        try:
            if proc.poll() is None:
                self._stop_process(proc)
        finally:
            self._kill()
            self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"

    # -- helpers ----------------------------------------------------------------------------
    def _wait_ready(self) -> str | None:
        """None once a TCP connect succeeds, else the reason it never did."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                return f"process exited with code {code}"
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                pass
            else:
                # The port answered; make sure it is our process that answered.
                if self._proc.poll() is None:
                    return None
                continue
            if time.monotonic() > deadline:
                return f"no TCP listener after {self.startup_timeout:.0f} s"
            time.sleep(0.05)

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # pragma: no cover - a SIGKILLed child always goes
            proc.wait(timeout=5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _cleanup(self) -> None:
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.log_path = None


class MosquittoBroker(_ProcessBroker):
    """mosquitto on loopback: anonymous, no persistence, generous packet limit, log to a file."""

    kind = "mosquitto"

    def __init__(
        self,
        port: int | None = None,
        host: str = LOOPBACK,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        binary: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        binary = binary or mosquitto_binary()
        if binary is None:
            raise BrokerError(
                "mosquitto is not installed (looked on PATH and in /usr/sbin, /usr/local/sbin): "
                "install it with `apt-get install mosquitto`, or use the embedded amqtt broker "
                "(start_broker('amqtt'))"
            )
        if max_packet_size < 20:
            raise ValueError("mosquitto refuses max_packet_size below 20 bytes")
        super().__init__(port=port, host=host, startup_timeout=startup_timeout)
        self.binary = binary
        self.max_packet_size = max_packet_size

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            # a fleet of thousands of devices: small packets must not wait for Nagle's algorithm, and a
            # device's queue must hold a round's messages while it is busy (the default keeps 1,000)
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            # Whole packet, all protocol versions; 0 would mean no limit.
            f"max_packet_size {self.max_packet_size}",
            # The parent redirects stderr to the log file: that works whatever user
            # mosquitto runs as, unlike log_dest file.
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root mosquitto would switch to the 'mosquitto' (or 'nobody') user; a
            # throwaway loopback broker gains nothing from that and may lack CAP_SETUID.
            lines.insert(0, "user root")
        return "\n".join(lines) + "\n"

    def _command(self, workdir: Path) -> list[str]:
        cfg = workdir / "mosquitto.conf"
        cfg.write_text(self.config_text(), encoding="utf-8")
        return [self.binary, "-c", str(cfg)]

    def _stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):  # _kill follows
        proc.wait(timeout=5)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class ConfiguredMosquitto(_ProcessBroker):
    """mosquitto run with a given configuration file; ready once its first listener accepts TCP.

    ``host``/``port`` come from the file's first ``listener <port> [<address>]`` line (an address-less
    listener is probed on loopback). As root the file is copied with ``user root`` put first: mosquitto
    would otherwise switch to the 'mosquitto' user, which cannot read keys written with mode 0600."""

    kind = "mosquitto"

    def __init__(self, config: Path, binary: str | None = None, startup_timeout: float = 10.0) -> None:
        binary = binary or mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed (looked on PATH and in /usr/sbin, /usr/local/sbin): "
                              "install it with `apt-get install mosquitto`")
        self.config = Path(config).resolve()
        try:
            text = self.config.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BrokerError(f"mosquitto configuration {self.config} not found; write one with `python -m cloud "
                              f"provision --fleet FILE --out DIR` (DIR/broker/mosquitto.conf)") from None
        port, host = _first_listener(text, self.config)
        super().__init__(port=port, host=host, startup_timeout=startup_timeout)
        self.binary = binary

    def _command(self, workdir: Path) -> list[str]:
        if not _is_root():
            return [self.binary, "-c", str(self.config)]
        copy = workdir / "mosquitto.conf"
        copy.write_text("user root\n" + self.config.read_text(encoding="utf-8"), encoding="utf-8")
        return [self.binary, "-c", str(copy)]

    def _stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        _terminate(proc)


def _first_listener(text: str, path: Path) -> tuple[int, str]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "listener":
            try:
                port = int(words[1])
            except ValueError:
                break
            host = words[2] if len(words) > 2 and words[2] not in ("0.0.0.0", "::") else LOOPBACK
            return port, host
    raise BrokerError(f"{path} has no `listener <port> [<address>]` line; "
                      f"regenerate it with `python -m cloud provision`")


# Runs in the child interpreter (python -c). stdin EOF or SIGTERM/SIGINT -> graceful shutdown.
_AMQTT_CHILD = r"""
import asyncio, json, logging, os, signal, sys

settings = json.loads(sys.argv[1])
logging.basicConfig(level=settings["log_level"], stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.getLogger("transitions").setLevel(logging.WARNING)
from amqtt.broker import Broker

class DmskdBroker(Broker):
    # amqtt 0.12.1, on every CONNECT, replays the retained messages matching every topic
    # filter that any session has (or had) subscribed to, so a new client receives, say, all
    # other devices' plans. Only replay for filters this session is itself subscribed to.

    async def _publish_retained_messages_for_subscription(self, subscription, session):
        subscribers = self._subscriptions.get(subscription[0], ())
        if not any(sub.client_id == session.client_id for sub, _qos in subscribers):
            return
        await super()._publish_retained_messages_for_subscription(subscription, session)

async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)
    def on_stdin():
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()
    loop.add_reader(fd, on_stdin)
    patch = settings["fix_retained_replay"] and hasattr(Broker, "_publish_retained_messages_for_subscription")
    broker = (DmskdBroker if patch else Broker)(settings["config"])
    await broker.start()
    logging.getLogger("dmskd.broker").info("amqtt broker listening on %s",
                                           settings["config"]["listeners"]["default"]["bind"])
    await stop.wait()
    try:
        await asyncio.wait_for(broker.shutdown(), timeout=settings["shutdown_timeout"])
    except Exception as exc:
        logging.getLogger("dmskd.broker").error("shutdown: %r", exc)

asyncio.run(main())
"""


def loopback_only(host: str) -> str:
    """`host` if it is an IPv4 loopback address ('localhost' becomes 127.0.0.1); else BrokerError naming the fix."""
    if host == "localhost":
        return LOOPBACK
    try:
        loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise BrokerError(f"the embedded amqtt broker is for local demos only (anonymous, no TLS) and binds to "
                          f"IPv4 loopback (127.0.0.1) only, not {host!r}: for a broker other machines reach, provision "
                          f"the fleet (`python -m cloud provision --fleet FILE --out DIR --host {host}`) and run "
                          f"`mosquitto -c DIR/broker/mosquitto.conf`")
    return host


class EmbeddedBroker(_ProcessBroker):
    """amqtt 0.12.1 on loopback in a child interpreter: anonymous, retained messages on; local demos only
    (any other bind address raises BrokerError).

    amqtt keeps retained messages in memory (a dict per topic) with no switch to turn them
    off, so "retained supported" needs no setting. Quirks of amqtt 0.12.1 (checked by hand):

    - On every CONNECT it replays, at QoS 0 with the retain flag, the retained messages of
      every topic filter any session has subscribed to (it loops over the broker-wide
      subscription table), so a new client gets other devices' plans and shards unasked.
      ``fix_retained_replay`` (default on) subclasses the broker in the child to replay only
      the connecting session's own filters. Clients should still ignore topics they did not
      subscribe to: mosquitto never sends them, stock amqtt does.
    - It delivers at the subscription's QoS, not min(publish QoS, subscription QoS): a QoS 0
      publish reaches a QoS 1 subscriber as QoS 1.
    - Anonymous sessions are never persistent: with clean_session=False nothing is queued
      while the client is away, and the session is dropped about a second after it
      disconnects. Devices cannot rely on the broker to hold QoS 1 messages for them.
    - No message-size limit (MQTT's 256 MiB): receivers must enforce their own.
    - PUBACK is sent before the broker stores a retained message, so a client that
      subscribes within the same instant may miss it.
    """

    kind = "amqtt"

    def __init__(
        self,
        port: int | None = None,
        host: str = LOOPBACK,
        startup_timeout: float = 20.0,
        log_level: str = "WARNING",
        python: str | None = None,
        fix_retained_replay: bool = True,
    ) -> None:
        super().__init__(port=port, host=loopback_only(host), startup_timeout=startup_timeout)
        self.log_level = log_level
        self.python = python or sys.executable
        self.fix_retained_replay = fix_retained_replay

    def config(self) -> dict:
        """The amqtt BrokerConfig, as the dict (YAML-equivalent) handed to amqtt.broker.Broker."""
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{self.host}:{self.port}"},
            },
            # Setting 'plugins' replaces amqtt's defaults (event/packet loggers and the $SYS
            # plugin, which publishes every 20 s): only anonymous authentication is kept.
            # Without an auth plugin amqtt refuses every CONNECT.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    def _command(self, workdir: Path) -> list[str]:
        settings = {
            "config": self.config(),
            "log_level": self.log_level,
            "shutdown_timeout": 8,
            "fix_retained_replay": self.fix_retained_replay,
        }
        return [self.python, "-c", _AMQTT_CHILD, json.dumps(settings)]

    def _stop_process(self, proc: subprocess.Popen[bytes]) -> None:
        # Closing stdin asks for a graceful shutdown; SIGTERM does too; then _kill.
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
            return
        except (OSError, subprocess.TimeoutExpired):
            pass
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)


def start_broker(kind: str = "auto", **kwargs) -> MosquittoBroker | EmbeddedBroker:
    """Start a loopback broker and return it (already started; use it as a context manager
    or call ``stop()``). ``kind``: "mosquitto", "amqtt", or "auto" (mosquitto if installed,
    else amqtt). Keyword arguments go to the broker class (``port``, ...)."""
    choice = (kind or "auto").strip().lower()
    if choice == "auto":
        choice = "mosquitto" if mosquitto_binary() else "amqtt"
    if choice == "mosquitto":
        broker: MosquittoBroker | EmbeddedBroker = MosquittoBroker(**kwargs)
    elif choice in ("amqtt", "embedded"):
        broker = EmbeddedBroker(**kwargs)
    else:
        raise ValueError(f"unknown broker kind {kind!r}: expected 'mosquitto', 'amqtt' or 'auto'")
    return broker.start()
