"""A tiny fleet's cloud artefacts, built once per session (teacher, shards, student program)."""

from __future__ import annotations

import pytest

from edge.plan import TrainingSettings
from simulator.artifacts import prepare_cloud
from simulator.config import ExperimentConfig


@pytest.fixture(scope="session")
def tiny_config() -> ExperimentConfig:
    """Devices with labels and a fresh student (cold start), so a few rounds visibly improve it."""
    return ExperimentConfig(devices=3, rounds=3, seed=1, teacher_epochs=8, training=TrainingSettings(local_epochs=2),
                            deadline_s=60.0, labelled_fraction=1.0, warm_start=False)


@pytest.fixture(scope="session")
def tiny_cloud(tiny_config):
    return prepare_cloud(tiny_config)
