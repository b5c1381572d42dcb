"""Shared fixtures: one loopback broker and one default teacher per session.

The packages are importable because the Makefile installs the project (`pip install -e .`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def default_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default four-exit teacher (cloud.teacher.TeacherConfig()) trained once per session on digits.

    Shared by tests/cloud and tests/export; TensorFlow loads only when a test asks for it."""
    from cloud.teacher import TeacherConfig

    from .teachers import DEFAULT_TEACHER_EPOCHS, make_teacher_dir

    return make_teacher_dir(tmp_path_factory.mktemp("default_teacher"), TeacherConfig(), epochs=DEFAULT_TEACHER_EPOCHS)
