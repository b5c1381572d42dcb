"""Broker addresses as users type them: host:port, mqtt://host:port, [::1]:port."""

from __future__ import annotations

import re

_URL_RE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))"
    r":(?P<port>[0-9]{1,5})/?$"
)


def parse_broker_url(text: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``mqtt://host:port`` (IPv6 as ``[::1]:1883``) into (host, port)."""
    expected = "expected 'host:port' or 'mqtt://host:port' (for example 127.0.0.1:1883)"
    if not isinstance(text, str):
        raise ValueError(f"broker address must be a string, {expected}; got {text!r}")
    match = _URL_RE.match(text.strip())
    if match is None:
        raise ValueError(f"bad broker address {text!r}: {expected}")
    scheme = match.group("scheme")
    if scheme is not None and scheme.lower() != "mqtt":
        raise ValueError(f"bad broker address {text!r}: scheme {scheme!r} is not supported, {expected}")
    host = match.group("ipv6") or match.group("host")
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"bad broker address {text!r}: port {port} is out of range 1..65535, {expected}")
    return host, port
