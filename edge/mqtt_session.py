"""A thin paho-mqtt 2 session: chunked publish, reassembled delivery, payload byte counting.

Every logical message on topic T travels as chunks on T/<index> (edge/chunking.py), so the
same code carries a 200-byte plan and a 200-KB shard. Handlers receive whole messages on
their logical topic; they run on the network thread and must be quick (hand work off). A handler
subscribed with an MQTT shared subscription, `$share/<group>/<filter>`, gets the messages of <filter>
the broker hands this client (they arrive on their real topic).

The network thread is paho's own (`loop_start`, one per session) unless the session is given a shared
`edge.mqtt_loop.MqttLoop`: then one thread serves every session on that loop through epoll (a simulated fleet of
thousands in one process), and a handler must never wait for the network: `publish(wait=True)` or `connect()`
from a handler raises RuntimeError instead of stalling every session on the loop.

With `tls` (edge.broker_credentials.TlsFiles) the session speaks MQTT over TLS, verifying the broker's
certificate against the fleet CA and presenting its own; `username`/`password` log in where the broker
takes passwords. A broker that refuses the client (CONNACK refusal, a TLS alert, the connection closed
before CONNACK) makes `connect` raise ConnectionError naming the cause and the fix, at once; so does a
broker that refuses or drops the TCP connection, a process out of file descriptors (EMFILE: the limits and
`ulimit -n`), and a socket above what paho's own select()-based thread can watch (descriptor 1024 and up).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.broker_credentials import TlsFiles
from edge.chunking import DEFAULT_CHUNK_LIMIT, ChunkAssembler, ChunkError, split_message
from edge.log_rate import LogBudget
from edge.mqtt_loop import SELECT_LIMIT, MqttLoop, descriptor_limit_reason, is_descriptor_limit
from edge.topics import chunk_base

log = logging.getLogger("dmskd.mqtt")

Handler = Callable[[str, bytes], None]
ErrorHandler = Callable[[str, str], None]
ConnectHandler = Callable[[bool], None]  # called with reconnected=True on every CONNACK after the first

RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 4  # back within seconds of a broker restart: 1 s, doubling up to 4 s
CLOSE_WAIT_S = 5.0  # on a shared loop, close() waits this long for the DISCONNECT to go out


@dataclass(frozen=True)
class TrafficRecord:
    """One MQTT payload sent or received by this client, as counted on the wire."""

    direction: str  # "up" (published) or "down" (received)
    topic: str
    nbytes: int


class MqttSession:
    """One MQTT 3.1.1 client: connect, subscribe with handlers, publish chunked, count bytes."""

    def __init__(self, client_id: str, host: str, port: int, chunk_limit: int = DEFAULT_CHUNK_LIMIT,
                 will: tuple[str, bytes] | None = None, keepalive: int = 30, *, tls: TlsFiles | None = None,
                 username: str | None = None, password: str | None = None, loop: MqttLoop | None = None) -> None:
        self.client_id = client_id
        self._loop = loop
        self.host, self.port, self.keepalive = host, port, keepalive
        self.chunk_limit = chunk_limit
        self.traffic: list[TrafficRecord] = []
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, Handler, Callable[[str], bool]]] = []  # filter, handler, its matcher
        self._on_error: ErrorHandler | None = None
        self._on_connect: list[ConnectHandler] = []
        self.connections = 0  # successful CONNACKs so far: 1 after connect(), more after each reconnect
        self._log_budget = LogBudget()
        self._assembler = ChunkAssembler(on_evict=self._log_eviction)
        # which reassembly stream (the unit of the per-stream limits) a logical topic's chunks count against:
        # the topic itself unless a service knows better (the aggregator: one stream per sender, across rounds)
        self.stream_of: Callable[[str], str] = lambda topic: topic
        self._connected = threading.Event()
        self._answered = threading.Event()  # CONNACK (either way) or the connection closed before one
        self._refusal: str | None = None
        self._last_error: str | None = None
        self.tls, self.username = tls, username
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv311, clean_session=True)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        if tls is not None:
            tls.check()
            try:
                self._client.tls_set(ca_certs=str(tls.ca), certfile=None if tls.cert is None else str(tls.cert),
                                     keyfile=None if tls.key is None else str(tls.key))
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"cannot load the TLS files (--tls-ca {tls.ca}, --tls-cert {tls.cert}, "
                                 f"--tls-key {tls.key}): {exc}; pass the PEM files `python -m cloud provision` "
                                 f"wrote for this client") from exc
        if (username is None) != (password is None):
            raise ValueError("a broker login needs both a username and a password")
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_log = self._handle_log
        if will:  # framed as a one-chunk message on T/0 like every other, so subscribers of T see it
            self._client.will_set(f"{will[0]}/0", split_message(will[1], message_id="will", limit=chunk_limit)[0],
                                  qos=1, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_message = self._handle_message
        self._client.on_disconnect = self._handle_disconnect

    def on_error(self, handler: ErrorHandler) -> None:
        """Called with (topic, reason) when a chunk or message cannot be reassembled."""
        self._on_error = handler

    def on_connect(self, handler: ConnectHandler) -> None:
        """Call handler(reconnected) on paho's network thread after every accepted connection, once the
        subscriptions are restored: where a client republishes what a restarted broker lost. Keep it quick."""
        self._on_connect.append(handler)

    def resubscribe(self, topic_filter: str) -> None:
        """Subscribe again to a filter already subscribed: the broker delivers its retained messages anew (what a
        device missed when a flooded broker dropped messages queued for it)."""
        if self._connected.is_set():
            self._client.subscribe(topic_filter + "/+", qos=1)

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Deliver every whole message under topic_filter (chunk level added here) to handler."""
        self._handlers.append((topic_filter, handler, topic_matcher(shared_subscription_filter(topic_filter))))
        if self._connected.is_set():
            self._client.subscribe(topic_filter + "/+", qos=1)

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop delivering topic_filter: its handlers are dropped and the broker told (nothing more is sent)."""
        self._handlers = [entry for entry in self._handlers if entry[0] != topic_filter]
        if self._connected.is_set():
            self._client.unsubscribe(topic_filter + "/+")

    def connect(self, timeout: float = 10.0) -> MqttSession:
        """Connect and start the network loop; raise ConnectionError naming the broker and the cause on failure."""
        where = f"MQTT broker at {self.host}:{self.port}"
        if self._loop is not None and self._loop.in_loop_thread():
            raise RuntimeError(f"{self.client_id}: connect() waits for a CONNACK that only the shared MQTT loop's "
                               f"thread can read; call it from another thread, never from a handler")
        self._answered.clear()
        self._refusal = self._last_error = None
        try:
            if self._loop is not None:
                self._loop.add(self._client, name=self.client_id, min_delay=RECONNECT_MIN_S,
                               max_delay=RECONNECT_MAX_S)
            self._client.connect(self.host, self.port, keepalive=self.keepalive)
            overflow = None if self._loop is not None else self._start_own_thread()
        except OSError as exc:
            self._stop_network()
            raise self._connect_error(where, exc) from exc
        if overflow is not None:
            self._stop_network(disconnect=True)
            raise ConnectionError(f"{where}: {self.client_id} got file descriptor {overflow}, and paho's own network "
                                  f"thread watches its socket with select(), which cannot go above "
                                  f"{SELECT_LIMIT - 1}: this process holds too many connections for a thread per "
                                  f"session; run the sessions on one shared loop (MqttSession(..., loop=MqttLoop()), "
                                  f"edge/mqtt_loop.py), as `python -m simulator run` does")
        if not self._answered.wait(timeout) and not self._connected.is_set():
            self._stop_network()
            raise ConnectionError(f"{where} took the TCP connection of {self.client_id} but sent no CONNACK within "
                                  f"{timeout:g} s: the broker is overloaded, or out of file descriptors or "
                                  f"connections itself (mosquitto: its own `ulimit -n` and max_connections; its log "
                                  f"says which)")
        if self._refusal is not None:
            self._stop_network(disconnect=True)  # paho would otherwise retry a refused login forever
            raise ConnectionError(f"{where} {self._refusal}")
        return self

    def _start_own_thread(self) -> int | None:
        """paho's loop_start, unless its select() could not watch this session's descriptors: then the highest one
        (the socket, or the socketpair loop_start opens to wake its select())."""
        sock = self._client.socket()
        fds = [sock.fileno()] if sock is not None else []
        with contextlib.suppress(OSError):  # the two descriptors loop_start's socketpair is about to get (lowest free)
            probe = socket.socketpair()
            fds += [s.fileno() for s in probe]
            for s in probe:
                s.close()
        if max(fds, default=0) < SELECT_LIMIT:
            fds = fds[:1]
            self._client.loop_start()
            fds += [s.fileno() for s in (self._client._sockpairR, self._client._sockpairW) if s is not None]
        highest = max(fds, default=0)
        return highest if highest >= SELECT_LIMIT else None

    def _connect_error(self, where: str, exc: OSError) -> ConnectionError:
        """The ConnectionError that says why connecting failed, and what to do about it."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ConnectionError(f"{where}: its TLS certificate does not verify ({exc.verify_message}); "
                                   f"pass the fleet's --tls-ca and the broker's address as provisioned "
                                   f"(python -m cloud provision --host)")
        if isinstance(exc, ssl.SSLError):
            return ConnectionError(f"{where}: TLS handshake failed ({exc}); {self._credentials_hint()}")
        if is_descriptor_limit(exc):
            return ConnectionError(f"cannot open a connection of {self.client_id} to {where}: "
                                   f"{descriptor_limit_reason(exc)}")
        start = f"start one (mosquitto -p {self.port}) or pass --broker host:port"
        if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
            return ConnectionError(f"cannot reach {where}: connection refused (nothing listens on port {self.port} "
                                   f"there); {start}")
        if isinstance(exc, TimeoutError):
            return ConnectionError(f"cannot reach {where}: no answer to the TCP connect within "
                                   f"{self._client.connect_timeout:.0f} s (a wrong address, a firewall that drops "
                                   f"it, or a broker whose backlog of connections to accept is full); check the "
                                   f"address, or {start}")
        return ConnectionError(f"cannot reach {where} ({exc}); {start}")

    def _stop_network(self, disconnect: bool = False) -> None:
        """After a failed connect: no network thread, no reconnects (disconnect: and no socket)."""
        if self._loop is None:
            self._client.loop_stop()
            if disconnect:
                self._client.disconnect()
            return
        gone = self._loop.remove(self._client)
        self._client.disconnect()
        if not gone.wait(CLOSE_WAIT_S):
            self._loop.forget(self._client)

    def close(self) -> None:
        """Disconnect cleanly and stop the network loop (on a shared loop: leave it once the DISCONNECT is out)."""
        if self._loop is None:
            self._client.disconnect()
            self._client.loop_stop()
        else:
            gone = self._loop.remove(self._client)
            self._client.disconnect()
            if not self._loop.in_loop_thread() and not gone.wait(CLOSE_WAIT_S):
                log.warning("%s: the DISCONNECT did not go out within %.0f s; dropping the connection",
                            self.client_id, CLOSE_WAIT_S)
                self._loop.forget(self._client)
        self._connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                wait: bool = True, timeout: float = 30.0) -> int:
        """Publish a logical message as chunks; return its chunk count. Waits for PUBACKs if asked.

        Never wait from a handler: on a shared MqttLoop that raises RuntimeError (the PUBACKs could only be read by
        the very thread that would be waiting); with wait=False paho still resends QoS 1 chunks until acknowledged."""
        if wait and self._loop is not None and self._loop.in_loop_thread():
            raise RuntimeError(f"{self.client_id}: publish(..., wait=True) to {topic} from a handler on the shared "
                               f"MQTT loop would wait for PUBACKs only that thread can read; publish with wait=False")
        chunks = split_message(payload, message_id=uuid.uuid4().hex[:16], limit=self.chunk_limit)
        infos = []
        for i, chunk in enumerate(chunks):
            infos.append(self._client.publish(f"{topic}/{i}", chunk, qos=qos, retain=retain))
            self._record("up", topic, len(chunk))
        if wait:
            deadline = time.monotonic() + timeout
            for info in infos:
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
                if not info.is_published():
                    raise TimeoutError(f"publish to {topic} not acknowledged within {timeout:.0f} s")
        return len(chunks)

    def clear_retained(self, topic: str, num_chunks: int, first: int = 0) -> None:
        """Remove a retained chunked message from the broker (empty retained publish per chunk), or its chunks
        from `first` on (what a shorter message that replaced it left behind)."""
        for i in range(first, num_chunks):
            self._client.publish(f"{topic}/{i}", b"", qos=1, retain=True)

    def _record(self, direction: str, topic: str, nbytes: int) -> None:
        with self._lock:
            self.traffic.append(TrafficRecord(direction, topic, nbytes))

    def _credentials_hint(self) -> str:
        if self.tls is not None and self.tls.mutual:
            return (f"check that --tls-cert {self.tls.cert} and --tls-key {self.tls.key} were issued by the fleet CA "
                    f"the broker trusts (python -m cloud provision), and --tls-ca {self.tls.ca} is that CA")
        if self.username is not None:
            return f"check --username {self.username} and --password-file (python -m cloud provision --password-auth)"
        if self.tls is not None:
            return ("the broker may require a client certificate: pass --tls-cert and --tls-key "
                    "(python -m cloud provision writes them)")
        return ("if the broker is a provisioned TLS listener, pass --tls-ca, --tls-cert and --tls-key "
                "(python -m cloud provision writes them), or --username and --password-file")

    def _handle_log(self, client: mqtt.Client, userdata: object, level: int, message: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._last_error = message

    def _handle_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                        reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            if self._answered.is_set():  # a reconnect refused; the first refusal is raised by connect
                log.error("%s: broker refused connection: %s", self.client_id, reason_code)
            else:
                self._refusal = (f"refused {self.client_id}: {str(reason_code).lower()}; "
                                 f"{self._credentials_hint()}")
                self._answered.set()
            return
        for topic_filter, _, _ in self._handlers:
            client.subscribe(topic_filter + "/+", qos=1)
        self.connections += 1
        self._connected.set()
        self._answered.set()
        for handler in self._on_connect:
            try:
                handler(self.connections > 1)
            except Exception:  # a hook's bug must not kill the network thread
                log.exception("%s: connect hook failed", self.client_id)

    def _handle_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                           reason_code: ReasonCode, properties: Properties | None) -> None:
        if not self._answered.is_set():  # closed before any CONNACK: a TLS alert, or TLS expected
            cause = self._last_error or str(reason_code)
            self._refusal = (f"closed the connection of {self.client_id} before accepting it ({cause}); "
                             f"{self._credentials_hint()}")
            self._answered.set()
            return
        self._connected.clear()
        if reason_code.is_failure:
            log.warning("%s: disconnected from broker: %s (paho reconnects)", self.client_id, reason_code)

    @property
    def reassembly(self) -> ChunkAssembler:
        """The chunk reassembler: its bounded memory (`stored_bytes`) and its eviction counts."""
        return self._assembler

    def _log_eviction(self, stream: str, reason: str) -> None:
        if self._log_budget.allows("evicted"):
            log.warning("%s: %s on %.120r (%d evictions so far)", self.client_id, reason, stream,
                        self._log_budget.counts["evicted"])

    def _handle_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return  # a cleared retained message
        topic = chunk_base(msg.topic)
        self._record("down", topic, len(msg.payload))
        try:
            whole = self._assembler.add(bytes(msg.payload), stream=self.stream_of(topic))
        except ChunkError as exc:
            if self._log_budget.allows("dropped"):
                log.warning("%s: dropped chunk on %.120r: %s (%d dropped so far)", self.client_id, msg.topic, exc,
                            self._log_budget.counts["dropped"])
            if self._on_error:
                self._on_error(topic, str(exc))
            return
        if whole is None:
            return
        for _, handler, matches in self._handlers:
            if matches(topic):
                try:
                    handler(topic, whole)
                except Exception:  # a handler bug must not kill the network thread
                    log.exception("%s: handler for %s failed", self.client_id, topic)


def topic_matcher(topic_filter: str) -> Callable[[str], bool]:
    """Whether a topic matches `topic_filter`, as paho's topic_matches_sub decides (MQTT 3.1.1 section 4.7), with
    the filter split once: paho builds a matcher tree on every call, which was a tenth of a device host's time."""
    levels = topic_filter.split("/")
    if "#" not in levels and "+" not in levels:
        return lambda topic: topic == topic_filter
    multi = levels[-1] == "#"
    fixed = levels[:-1] if multi else levels
    wild_first = levels[0] in ("+", "#")

    def matches(topic: str) -> bool:
        if wild_first and topic.startswith("$"):
            return False  # a wildcard does not reach system topics ($SYS/...)
        parts = topic.split("/")
        if len(parts) < len(fixed) or (not multi and len(parts) != len(fixed)):
            return False
        return all(f == "+" or f == p for f, p in zip(fixed, parts))

    return matches


def shared_subscription_filter(topic_filter: str) -> str:
    """The filter a message's real topic matches: `$share/<group>/<filter>` delivers on topics of <filter>."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else topic_filter
    return topic_filter
