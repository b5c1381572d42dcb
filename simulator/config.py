"""The knobs of one simulated federated run, validated when built."""

from __future__ import annotations

from dataclasses import dataclass

from cloud.strategy import DpMode
from edge.chunking import DEFAULT_CHUNK_LIMIT, MIN_FLEET_CHUNK_LIMIT
from edge.plan import TrainingSettings
from simulator.device_pool import DeviceSampling
from simulator.device_shift import PARTS
from simulator.ray_cluster import ENGINES


@dataclass(frozen=True)
class ExperimentConfig:
    """One DMSKD run on the bundled digits: fleet, rounds, privacy; local training in `training`."""

    devices: int = 10
    rounds: int = 10
    seed: int = 0
    dp: DpMode = DpMode.NONE
    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float = 1e-5
    training: TrainingSettings = TrainingSettings()
    task: str = "digits"  # the bundled data: digits, or a smart-meter task of simulator.meter_tasks.TASKS
    data: str | None = None  # a data set file or folder of the user's (simulator.loaders), instead of `task`
    dirichlet_alpha: float = 1.0
    labelled_fraction: float = 0.0  # of every device's training samples (0: meters without labels, the default)
    cloud_fraction: float = 0.35  # of the data set: the cloud's labelled proxy split
    device_shift: float = 0.0  # strength in [0, 1] of every device's own transform (simulator.device_shift)
    shift_parts: tuple[str, ...] = PARTS  # which components of the device shift apply
    cloud_augment: float = 0.0  # strength of the random shifts the cloud trains its teacher and students on
    augment_copies: int = 2  # transformed copies of the cloud's training data when cloud_augment > 0
    warm_start: bool = True  # federate from the cloud-distilled student (False: from a fresh init)
    min_samples_per_device: int = 8  # the Dirichlet split redraws until every device holds at least this many
    device_sampling: DeviceSampling = DeviceSampling.AUTO  # partition the device data, or draw from a pool
    samples_per_device: int = 32  # pool sampling: every device's training samples (and AUTO's threshold)
    teacher_epochs: int = 30
    student_hidden: tuple[int, ...] = (64,)
    budget_span: tuple[float, float] = (0.1, 1.0)  # budgets as fractions of the full teacher (paper: 0.5..5 GFLOP)
    comm_lambda: float = 0.05
    chunk_limit: int = DEFAULT_CHUNK_LIMIT
    deadline_s: float = 120.0  # a round waits at most this long for devices that look online
    quorum_fraction: float = 1.0  # a round closes once this share of its cohort was accepted
    insecure_seeded_noise: bool = False  # DP noise from the seed (reproducible, predictable): tests and studies only
    sampling_rate: float = 1.0  # q: each round's cohort is a Poisson sample of the devices at this rate
    update_bits: int = 8  # bits per value of a device's update on the wire: 32 (float32), 8, 4 or 2
    model_bits: int = 8  # bits per value of the global model's step down to the devices (32: the whole model)
    engine: str = "local"  # where the devices run: local (this process) or ray (simulator.ray_cluster)
    ray_address: str | None = None  # --engine ray: HOST:PORT of a Ray cluster's head (None: a local cluster)
    device_processes: int | None = None  # local engine: processes hosting the devices (None: auto by fleet size)

    def __post_init__(self) -> None:
        if self.devices < 1 or self.rounds < 1:
            raise ValueError("--devices and --rounds must be at least 1")
        if self.engine not in ENGINES:
            raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.ray_address is not None and self.engine != "ray":
            raise ValueError("--ray-address names the Ray cluster of --engine ray: add --engine ray, or drop it")
        if self.device_processes is not None and self.device_processes < 1:
            raise ValueError(f"--device-processes must be auto or at least 1, got {self.device_processes}")
        if self.device_processes is not None and self.engine != "local":
            raise ValueError(f"--device-processes splits the local engine's devices over processes; --engine "
                             f"{self.engine} places them itself: drop one of the two")
        for flag, bits in (("--update-bits", self.update_bits), ("--model-bits", self.model_bits)):
            if bits not in (32, 8, 4, 2):
                raise ValueError(f"{flag} must be 32, 8, 4 or 2, got {bits}")
        if self.chunk_limit < MIN_FLEET_CHUNK_LIMIT:
            raise ValueError(f"--chunk-limit must be at least {MIN_FLEET_CHUNK_LIMIT} bytes, got {self.chunk_limit}")
        if not 0.0 < self.sampling_rate <= 1.0:
            raise ValueError(f"--sampling-rate must be in (0, 1], got {self.sampling_rate}")
        if self.dp is not DpMode.NONE and self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError(f"--dp {self.dp.value} needs --target-epsilon or --noise-multiplier")
        if self.target_epsilon is not None and self.target_epsilon <= 0:
            raise ValueError("--target-epsilon must be positive")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError("--device-labels must be none, all or a fraction in [0, 1]")
        if self.data is not None and self.task != "digits":
            raise ValueError("pass --task or --data, not both")
        if not 0.0 <= self.device_shift <= 1.0:
            raise ValueError("--device-shift must be in [0, 1]")
        unknown = sorted(set(self.shift_parts) - set(PARTS))
        if unknown or not self.shift_parts:
            raise ValueError(f"--shift-parts takes some of {', '.join(PARTS)}; got {unknown or 'none'}")
        if not 0.0 <= self.cloud_augment <= 1.0:
            raise ValueError("--cloud-augment must be in [0, 1]")
        if self.min_samples_per_device < 1:
            raise ValueError("--min-samples-per-device must be at least 1")
        if not isinstance(self.device_sampling, DeviceSampling):
            raise ValueError(f"--device-sampling must be a DeviceSampling, got {self.device_sampling!r}")
        if self.samples_per_device < 1:
            raise ValueError("--samples-per-device must be at least 1")
        lo, hi = self.budget_span
        if not 0 < lo <= hi:
            raise ValueError("budget span must satisfy 0 < low <= high")
