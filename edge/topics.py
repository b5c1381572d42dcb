"""MQTT topic names under dmskd/<fleet>/ (DESIGN.md §4), in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FleetTopics:
    """Topic builder for one fleet; chunked messages add /<index> below these."""

    fleet: str

    @property
    def root(self) -> str:
        return f"dmskd/{self.fleet}"

    def plan(self, device: str) -> str:
        return f"{self.root}/plan/{device}"

    def shard(self, shard_id: str) -> str:
        return f"{self.root}/shard/{shard_id}"

    def student_program(self, digest: str) -> str:
        return f"{self.root}/student/{digest}"

    def model(self, version: int) -> str:
        return f"{self.root}/model/{version}"

    @property
    def model_step(self) -> str:
        """The quantised step to the newest version from the one before (edge.model_step): what devices download.
        One retained message, replaced every round (its version is in its metadata): nothing to clear, so a
        device receives one message per round here, not the new step and the old one's clearing."""
        return f"{self.root}/step"

    def update(self, round_: int, device: str) -> str:
        return f"{self.root}/round/{round_}/update/{device}"

    def result(self, round_: int) -> str:
        return f"{self.root}/round/{round_}/result"

    def cohort(self, device: str) -> str:
        """Whether `device` was sampled for the open round (its number is in the notice), and its last update's
        fate: told to that device alone (the sample stays secret); one retained message, replaced every round."""
        return f"{self.root}/cohort/{device}"

    def status(self, device: str) -> str:
        """`online` or `offline` (the device's Last Will), retained: who the aggregator still waits for."""
        return f"{self.root}/status/{device}"

    @property
    def all_status(self) -> str:
        return f"{self.root}/status/+"

    @property
    def all_results(self) -> str:
        return f"{self.root}/round/+/result"

    @property
    def manifest(self) -> str:
        """The fleet's manifest, retained after every plan: a device whose plan is not there by then is unknown."""
        return f"{self.root}/fleet"

    @property
    def all_models(self) -> str:
        return f"{self.root}/model/+"

    @property
    def all_updates(self) -> str:
        return f"{self.root}/round/+/update/+"


def chunk_base(topic: str) -> str:
    """The logical topic of a chunk topic (strip the trailing /<index>)."""
    return topic.rsplit("/", 1)[0]
