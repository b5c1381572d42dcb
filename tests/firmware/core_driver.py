"""Calls into dmskd_core_cli (the C core's test driver) with numpy tensors and edge/ metadata values."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.wire import ModelStepMeta, UpdateMeta, WeightsMeta


@dataclass(frozen=True)
class CliResult:
    """What one driver call printed (parsed JSON) and its exit code (0 ok, 2 a core refusal)."""

    code: int
    out: dict

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.out.get("status") == "ok"


def run(cli: Path, *args: str | Path) -> CliResult:
    """Run the driver; fail on a usage error (exit 64+) with its stderr."""
    done = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=60)
    if done.returncode not in (0, 2):
        raise AssertionError(f"dmskd_core_cli {' '.join(map(str, args))} exited {done.returncode}: {done.stderr}")
    return CliResult(done.returncode, json.loads(done.stdout.strip().split("\n")[-1]))


def tensor_args(tensors: dict[str, np.ndarray] | dict[str, tuple[int, ...]]) -> list[str]:
    """--tensor NAME:SHAPE for each tensor (or template entry), in dict order."""
    args = []
    for name, value in tensors.items():
        shape = value if isinstance(value, tuple) else np.shape(value)
        args += ["--tensor", f"{name}:{','.join(map(str, shape))}"]
    return args


def flat_values(tensors: dict[str, np.ndarray]) -> bytes:
    """The tensors' float32 values concatenated in dict order (the driver's --values format)."""
    return b"".join(np.asarray(v, "<f4").tobytes() for v in tensors.values())


def rounding_words(seed: int, count: int) -> bytes:
    """The 64-bit words numpy's default_rng(seed).random(count) turns into its uniforms, little-endian."""
    return np.random.default_rng(seed).bit_generator.random_raw(count).astype("<u8").tobytes()


def encode(cli: Path, tmp: Path, tensors: dict[str, np.ndarray], meta: UpdateMeta | WeightsMeta | ModelStepMeta,
           entropy: bytes | None = None, old: dict[str, np.ndarray] | None = None, compact: bool = False) -> bytes:
    """The C encoder's blob of tensors under meta (an update, weights, or the step old -> tensors); compact:
    an update in protocol 3's container."""
    values, out = tmp / "values.f32", tmp / "blob.st"
    values.write_bytes(flat_values(tensors))
    args: list[str | Path] = [*tensor_args(tensors), "--values", values, "--out", out, "--fleet", meta.fleet,
                              "--round", str(meta.round), "--encoding", meta.encoding]
    if entropy is not None:
        (tmp / "entropy.bin").write_bytes(entropy)
        args += ["--entropy", tmp / "entropy.bin"]
    if isinstance(meta, UpdateMeta):
        verb = "encode-update"
        args += ["--device", meta.device, "--base", str(meta.base_version), "--examples", str(meta.num_examples),
                 "--clip", repr(meta.clip), "--noise", repr(meta.noise_multiplier), "--dp", meta.dp_mode,
                 "--training", meta.training, "--container", "compact" if compact else "safetensors"]
    elif isinstance(meta, WeightsMeta):
        verb = "encode-weights"
        args += ["--version", str(meta.version)]
        args.remove("--encoding")
        args.remove(meta.encoding)
    else:
        assert old is not None, "a step needs the old weights"
        verb = "encode-step"
        (tmp / "old.f32").write_bytes(flat_values(old))
        args += ["--version", str(meta.version), "--base", str(meta.base_version), "--old", tmp / "old.f32"]
    result = run(cli, verb, *args)
    assert result.ok, result.out
    return out.read_bytes()


def decode(cli: Path, tmp: Path, kind: str, blob: bytes, template: dict[str, tuple[int, ...]] | None = None,
           accept: tuple[str, ...] = ("float32-delta",),
           apply_to: dict[str, np.ndarray] | None = None) -> tuple[CliResult, dict[str, np.ndarray] | None]:
    """The C decoder's verdict on blob and, with a template, the float32 values it yields (by template name)."""
    path, values = tmp / "in.st", tmp / "decoded.f32"
    path.write_bytes(blob)
    args: list[str | Path] = ["decode", kind, path, "--accept", ",".join(accept)]
    if template:
        args += [*tensor_args(template), "--values-out", values]
    if apply_to is not None:
        (tmp / "apply.f32").write_bytes(flat_values({k: apply_to[k] for k in sorted(apply_to)}))
        args += ["--apply-to", tmp / "apply.f32"]
    values.unlink(missing_ok=True)
    result = run(cli, *args)
    if not (result.ok and template):
        return result, None
    flat = np.frombuffer(values.read_bytes(), "<f4")
    arrays, start = {}, 0
    for name in sorted(template):
        size = int(np.prod(template[name], dtype=np.int64))
        arrays[name] = flat[start:start + size].reshape(template[name])
        start += size
    return result, arrays
