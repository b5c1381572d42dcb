"""Shared fixtures: one loopback broker and one default teacher per session.

The packages are importable because the Makefile installs the project (`pip install -e .`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from simulator.broker import EmbeddedBroker, MosquittoBroker, mosquitto_binary, start_broker


def broker_kind_for_tests() -> str:
    """'mosquitto' when installed, else 'amqtt'; DMSKD_TEST_BROKER=amqtt|mosquitto forces one."""
    forced = os.environ.get("DMSKD_TEST_BROKER", "").strip().lower()
    if forced:
        if forced not in ("amqtt", "mosquitto"):
            raise pytest.UsageError(f"DMSKD_TEST_BROKER={forced!r}: expected 'amqtt' or 'mosquitto'")
        return forced
    return "mosquitto" if mosquitto_binary() else "amqtt"


@pytest.fixture(scope="session")
def broker() -> Iterator[MosquittoBroker | EmbeddedBroker]:
    """One loopback broker for the whole session, with .host, .port, .url and .kind.

    Tests sharing it must use their own topics (retained messages outlive a test)."""
    running = start_broker(broker_kind_for_tests())
    try:
        yield running
    finally:
        running.stop()
