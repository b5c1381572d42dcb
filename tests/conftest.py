"""Shared fixtures. The repo root goes on sys.path so tests import cloud/, edge/, simulator/."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from simulator.broker import EmbeddedBroker, MosquittoBroker, mosquitto_binary, start_broker  # noqa: E402


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
