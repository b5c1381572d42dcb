"""A tiny digits fleet's cloud artefacts (teacher, int8 shards, student), built once per test session."""

from __future__ import annotations

import functools

ROUNDS = 3


@functools.cache
def tiny_fleet():
    """(ExperimentConfig, CloudArtifacts) of 3 labelled devices, a cold-start student and 3 rounds (~11 s)."""
    from edge.plan import TrainingSettings
    from simulator.artifacts import prepare_cloud
    from simulator.config import ExperimentConfig

    config = ExperimentConfig(devices=3, rounds=ROUNDS, seed=1, teacher_epochs=8,
                              training=TrainingSettings(local_epochs=2), deadline_s=60.0, labelled_fraction=1.0,
                              warm_start=False)
    return config, prepare_cloud(config)
