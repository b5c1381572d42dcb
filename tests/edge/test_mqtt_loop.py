"""Many MqttSessions on one shared MqttLoop (edge/mqtt_loop.py, issue 11): one network thread, no select() ceiling,
reconnects after a broker restart with paho's backoff, and connect errors that say why.

The descriptor cases run in a child interpreter whose RLIMIT_NOFILE (or open descriptors) the test sets."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge.mqtt_loop import MqttLoop
from edge.mqtt_session import MqttSession
from simulator.broker import MosquittoBroker, free_port, mosquitto_binary

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0
NEEDS_MOSQUITTO = pytest.mark.skipif(mosquitto_binary() is None, reason="needs mosquitto (apt-get install mosquitto)")


class Counter:
    """Whole messages received, counted, with a wait for a total."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._cond:
            self.messages.append((topic, payload))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> list[tuple[str, bytes]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


def root() -> str:
    return f"dmskd/looptest-{uuid.uuid4().hex[:8]}"


@contextmanager
def closing(sessions: list[MqttSession]) -> Iterator[list[MqttSession]]:
    try:
        yield sessions
    finally:
        for s in sessions:
            s.close()


def test_two_hundred_sessions_share_one_thread_and_exchange_chunked_messages(broker) -> None:
    top, loop, threads = root(), MqttLoop(), threading.active_count()
    model, update = bytes(range(256)) * 80, bytes(range(255, -1, -1)) * 80  # 20 KB each, 3 chunks of 8 KiB
    inboxes = [Counter() for _ in range(200)]
    updates = Counter()
    with closing([MqttSession(f"loop-{i}-{top[-8:]}", broker.host, broker.port, chunk_limit=8192, loop=loop)
                  for i in range(200)]) as devices, \
            closing([MqttSession(f"loop-server-{top[-8:]}", broker.host, broker.port, chunk_limit=8192)]) as server:
        server[0].subscribe(f"{top}/update/+", updates)
        server[0].connect()
        server[0].publish(f"{top}/model", model, retain=True)
        for device, inbox in zip(devices, inboxes):
            device.subscribe(f"{top}/model", inbox)  # the retained model arrives on connect
            device.subscribe(f"{top}/plan/{device.client_id}", inbox)
            device.connect()
        assert threading.active_count() <= threads + 2  # the loop's thread, the server's own paho thread
        for device in devices:
            device.publish(f"{top}/update/{device.client_id}", update, wait=False)
        for device in devices[:5]:  # and a wait from outside the loop's thread returns once acknowledged
            assert device.publish(f"{top}/update/{device.client_id}-again", update, wait=True) == 3
        assert all(inbox.wait_for(1) == [(f"{top}/model", model)] for inbox in inboxes)
        got = updates.wait_for(205)
        assert len(got) == 205 and {payload for _, payload in got} == {update}
        assert len(loop) == 200
    deadline = time.monotonic() + 3
    while loop.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not loop.running and len(loop) == 0  # the thread ends with its last session


def test_publishes_and_pubacks_go_out_without_an_epoll_registration_each(broker) -> None:
    top, loop = root(), MqttLoop()
    got = Counter()
    with closing([MqttSession(f"flush-{i}-{top[-8:]}", broker.host, broker.port, loop=loop)
                  for i in range(20)]) as devices, \
            closing([MqttSession(f"flush-server-{top[-8:]}", broker.host, broker.port)]) as server:
        server[0].subscribe(f"{top}/up/+", got)
        server[0].connect()
        for device in devices:
            device.subscribe(f"{top}/down", Counter())
            device.connect()
        selector, modified = loop._selector, []
        assert selector is not None
        real_modify = selector.modify
        selector.modify = lambda *a, **k: (modified.append(a[1]), real_modify(*a, **k))[1]  # type: ignore[method-assign]
        for i in range(10):  # 200 publishes from this thread, and 200 QoS 1 deliveries that each need a PUBACK
            server[0].publish(f"{top}/down", b"model %d" % i, wait=False)
            for device in devices:
                device.publish(f"{top}/up/{device.client_id}", b"update %d" % i, wait=False)
        assert len(got.wait_for(200)) == 200
    assert len(modified) < 20  # before: two epoll_ctl per packet, 800 here


def test_a_burst_beyond_the_socket_buffer_is_finished_when_the_socket_drains(broker) -> None:
    top, loop = root(), MqttLoop()
    got, blob = Counter(), bytes(range(256)) * 1024  # 40 x 256 KiB at once: far beyond a loopback socket's buffer
    with closing([MqttSession(f"burst-{top[-8:]}", broker.host, broker.port, loop=loop)]) as dev, \
            closing([MqttSession(f"burst-server-{top[-8:]}", broker.host, broker.port)]) as srv:
        srv[0].subscribe(f"{top}/up", got)
        srv[0].connect()
        dev[0].connect()
        sock = dev[0]._client.socket()
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the kernel takes a few KiB per send at most
        selector, watched = loop._selector, []
        assert selector is not None
        real_modify = selector.modify
        selector.modify = lambda *a, **k: (watched.append(a[1]), real_modify(*a, **k))[1]  # type: ignore[method-assign]
        for _ in range(40):
            dev[0].publish(f"{top}/up", blob, wait=False)
        assert [p for _, p in got.wait_for(40, timeout=30)] == [blob] * 40
    assert watched  # the socket did fill: it was watched for writability, and that finished the burst


def test_waiting_from_a_handler_raises_at_once_instead_of_stalling_every_session(broker) -> None:
    top, loop = root(), MqttLoop()
    errors: list[str] = []
    answered = Counter()

    def handler(topic: str, payload: bytes) -> None:
        try:
            probe.publish(f"{top}/reply", b"waited", wait=True)
        except RuntimeError as exc:
            errors.append(str(exc))
        probe.publish(f"{top}/reply", b"not waited", wait=False)

    probe = MqttSession(f"probe-{top[-8:]}", broker.host, broker.port, loop=loop)
    listener = MqttSession(f"listener-{top[-8:]}", broker.host, broker.port, loop=loop)
    with closing([probe, listener]):
        probe.subscribe(f"{top}/ask", handler)
        listener.subscribe(f"{top}/reply", answered)
        probe.connect()
        listener.connect()
        started = time.monotonic()
        listener.publish(f"{top}/ask", b"?")
        assert answered.wait_for(1) == [(f"{top}/reply", b"not waited")]
        assert time.monotonic() - started < 2.0
    assert len(errors) == 1 and "wait=True" in errors[0] and "handler" in errors[0]


@NEEDS_MOSQUITTO
def test_sessions_on_the_loop_reconnect_after_a_broker_restart_with_paho_backoff() -> None:
    """Lost at t=0: an attempt at 1 s (refused, the broker is down), the next 2 s later (3 s), when it is back."""
    broker = MosquittoBroker(port=free_port()).start()
    top, loop = root(), MqttLoop()
    reconnected_at: dict[str, float] = {}
    inboxes = [Counter() for _ in range(20)]
    sessions = [MqttSession(f"restart-{i}-{top[-8:]}", broker.host, broker.port, loop=loop) for i in range(20)]
    try:
        for s, inbox in zip(sessions, inboxes):
            s.subscribe(f"{top}/after", inbox)
            s.on_connect(lambda again, s=s: again and reconnected_at.setdefault(s.client_id, time.monotonic()))
            s.connect()
        assert broker._proc is not None
        broker._proc.kill()
        lost = time.monotonic()
        broker.stop()
        time.sleep(2.0)
        broker.start()
        deadline = time.monotonic() + 10
        while len(reconnected_at) < len(sessions) and time.monotonic() < deadline:
            time.sleep(0.05)
        delays = sorted(t - lost for t in reconnected_at.values())
        assert len(delays) == len(sessions), f"only {len(delays)} of {len(sessions)} reconnected"
        assert delays[0] > 2.8, f"reconnected after {delays[0]:.2f} s: sooner than paho's 1 s + 2 s"
        assert delays[-1] < 8.0
        assert loop.reconnect_attempts >= 2 * len(sessions)
        with closing([MqttSession(f"after-{top[-8:]}", broker.host, broker.port).connect()]) as (sender,):
            sender.publish(f"{top}/after", b"back")
        assert all(inbox.wait_for(1) == [(f"{top}/after", b"back")] for inbox in inboxes)  # subscriptions restored
    finally:
        for s in sessions:
            s.close()
        broker.stop()


def test_a_closed_session_leaves_the_loop_at_once_and_is_not_reconnected(broker) -> None:
    loop = MqttLoop()
    kept = MqttSession(f"kept-{uuid.uuid4().hex[:6]}", broker.host, broker.port, loop=loop).connect()
    closed = MqttSession(f"closed-{uuid.uuid4().hex[:6]}", broker.host, broker.port, loop=loop).connect()
    closed.close()
    assert len(loop) == 1 and closed._client.socket() is None
    time.sleep(1.2)  # past the first reconnect delay
    assert closed.connections == 1 and closed._client.socket() is None
    kept.close()
    assert len(loop) == 0


# -- connect errors that say why ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True], ids=["own thread", "shared loop"])
def test_a_refused_tcp_connection_says_so(shared: bool) -> None:
    port = free_port()
    session = MqttSession("refused", "127.0.0.1", port, loop=MqttLoop() if shared else None)
    with pytest.raises(ConnectionError) as exc:
        session.connect(timeout=2)
    assert f"cannot reach MQTT broker at 127.0.0.1:{port}: connection refused" in str(exc.value)
    assert "pass --broker host:port" in str(exc.value)


@pytest.mark.parametrize("shared", [False, True], ids=["own thread", "shared loop"])
def test_a_tcp_connect_that_times_out_says_so(shared: bool, monkeypatch) -> None:
    def no_answer(*args, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", no_answer)  # what paho calls; a SYN dropped for 5 s
    session = MqttSession("timeout", "127.0.0.1", 1883, loop=MqttLoop() if shared else None)
    with pytest.raises(ConnectionError) as exc:
        session.connect(timeout=2)
    assert "no answer to the TCP connect within 5 s" in str(exc.value)


@pytest.mark.parametrize("shared", [False, True], ids=["own thread", "shared loop"])
def test_a_listener_that_never_answers_mqtt_is_a_missing_connack_not_a_bare_timeout(shared: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP (the kernel does), never speaks MQTT
        port = silent.getsockname()[1]
        loop = MqttLoop() if shared else None
        session = MqttSession("silent", "127.0.0.1", port, loop=loop)
        with pytest.raises(ConnectionError) as exc:
            session.connect(timeout=0.5)
    assert "took the TCP connection of silent but sent no CONNACK within 0.5 s" in str(exc.value)
    assert "ulimit -n" in str(exc.value) and "max_connections" in str(exc.value)
    assert loop is None or len(loop) == 0


def _child(code: str, *args: object) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_EMFILE_CHILD = r"""
import json, os, resource, sys
from edge.mqtt_loop import MqttLoop
from edge.mqtt_session import MqttSession
host, port, shared = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "shared"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64 if shared else hard))  # shared: the loop cannot raise it
session = MqttSession("emfile", host, port, loop=MqttLoop() if shared else None)
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
try:
    session.connect(timeout=5)
    print(json.dumps({"error": None}))
except ConnectionError as exc:
    print(json.dumps({"error": str(exc), "hard": hard}))
"""


@pytest.mark.parametrize("shared", [False, True], ids=["own thread, soft limit lowered", "shared loop, hard too"])
def test_running_out_of_descriptors_names_the_limit_and_ulimit(broker, shared: bool) -> None:
    out = _child(_EMFILE_CHILD, broker.host, broker.port, "shared" if shared else "own")
    message = out["error"]
    assert message is not None and "out of file descriptors (EMFILE" in message
    assert "soft limit `ulimit -n` = 64" in message
    if shared:
        assert "hard limit 64" in message and "the hard limit is reached" in message
    else:
        assert f"`ulimit -n {out['hard']}`" in message and "shared MqttLoop" in message


_RAISE_CHILD = r"""
import json, resource, sys
from edge.mqtt_loop import MqttLoop
from edge.mqtt_session import MqttSession
host, port = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
loop = MqttLoop()
sessions = [MqttSession(f"raise-{i}", host, port, loop=loop).connect() for i in range(200)]
after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
for s in sessions:
    s.close()
print(json.dumps({"connected": len(sessions), "soft": after, "hard": hard}))
"""


def test_the_shared_loop_raises_the_soft_descriptor_limit_for_a_fleet_that_needs_it(broker) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard open-file limit is {hard}")
    out = _child(_RAISE_CHILD, broker.host, broker.port)
    assert out["connected"] == 200 and out["soft"] == out["hard"]


_HIGH_DESCRIPTOR_CHILD = r"""
import json, os, resource, sys
from edge.mqtt_loop import MqttLoop
from edge.mqtt_session import MqttSession
host, port, top = sys.argv[1], int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # every socket from now on is above 1023
own = MqttSession("high-own", host, port)
try:
    own.connect(timeout=5)
    own_error = None
except ConnectionError as exc:
    own_error = str(exc)
loop = MqttLoop()
got = []
sessions = [MqttSession(f"high-{i}", host, port, loop=loop) for i in range(20)]
for s in sessions:
    s.subscribe(top, lambda t, p: got.append(p))
    s.connect(timeout=5)
sessions[0].publish(top, b"above 1023", wait=True)
import time
deadline = time.monotonic() + 10
while len(got) < 20 and time.monotonic() < deadline:
    time.sleep(0.01)
fds = [s._client.socket().fileno() for s in sessions]
for s in sessions:
    s.close()
print(json.dumps({"own_error": own_error, "received": len(got), "lowest_fd": min(fds)}))
"""


def test_sessions_above_descriptor_1023_work_on_the_loop_and_fail_clearly_on_their_own_thread(broker) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"the hard open-file limit is {hard}")
    out = _child(_HIGH_DESCRIPTOR_CHILD, broker.host, broker.port, root())
    assert out["lowest_fd"] > 1023 and out["received"] == 20
    assert "select(), which cannot go above 1023" in out["own_error"]
    assert "loop=MqttLoop()" in out["own_error"]


# -- TLS on the shared loop ----------------------------------------------------------------------------------------


@NEEDS_MOSQUITTO
def test_mutual_tls_sessions_on_the_loop_exchange_messages_and_a_refusal_reads_as_on_their_own_thread(
        tmp_path: Path) -> None:
    from cloud.provision import FleetIdentities, provision
    from edge.broker_credentials import BrokerCredentials, TlsFiles
    from edge.topics import FleetTopics
    from simulator.broker import ConfiguredMosquitto

    fleet = provision(FleetIdentities("looptls", ("meter-a",)), tmp_path / "fleet", port=free_port())
    topics, loop = FleetTopics("looptls"), MqttLoop()

    def creds(name: str) -> BrokerCredentials:
        return BrokerCredentials.from_identity_dir(fleet.identity_dir(name))

    def session(name: str, c: BrokerCredentials) -> MqttSession:
        return MqttSession(f"{name}-{uuid.uuid4().hex[:6]}", broker.host, broker.port, tls=c.tls, loop=loop)

    with ConfiguredMosquitto(fleet.broker_config) as broker:
        device_inbox, aggregator_inbox = Counter(), Counter()
        with closing([session("agg", creds("looptls-aggregator")), session("dev", creds("meter-a"))]) as (agg, dev):
            agg.subscribe(topics.all_updates, aggregator_inbox)
            dev.subscribe(topics.plan("meter-a"), device_inbox)
            agg.connect()
            dev.connect()
            agg.publish(topics.plan("meter-a"), bytes(300_000), retain=True)  # 3 chunks of 128 KiB over TLS
            dev.publish(topics.update(0, "meter-a"), b"update of a")
            assert device_inbox.wait_for(1) == [(topics.plan("meter-a"), bytes(300_000))]
            assert aggregator_inbox.wait_for(1) == [(topics.update(0, "meter-a"), b"update of a")]
        stranger = session("nocert", BrokerCredentials(TlsFiles(fleet.ca_cert)))
        with pytest.raises(ConnectionError) as exc:
            stranger.connect(timeout=5)
    assert "closed the connection" in str(exc.value) and "pass --tls-cert and --tls-key" in str(exc.value)
    assert len(loop) == 0
