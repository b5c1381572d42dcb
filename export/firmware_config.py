"""One device class's firmware configuration: what `firmware_stubs` builds with -DDMSKD_DEVICE_CONFIG=DIR.

DIR (DIR/firmware/<class> under `python -m export --out`) holds, all generated:
  <shard>_model_data.{cc,h}, <shard>_op_resolver.h      the mcu shard (export.targets.mcu)
  student_train_step_model_data.{cc,h}, ..._op_resolver.h the functional train step (export.student_train_step)
  dmskd_device_config.h / .cc   C-compatible: model pointers and lengths, arenas, student shape, fleet,
                                topics, pinned fleet public key (raw Ed25519), chunk limit
  dmskd_tflm_resolvers.h        which generated resolver the glue compiles in (C++)
  config.cmake                  DMSKD_CONFIG_SOURCES and the figures as CMake variables
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge.chunking import MIN_FLEET_CHUNK_LIMIT
from export.c_array import c_identifier, model_data_header, model_data_source
from export.tflm_resolver import op_resolver_header, resolver_type_name

STUDENT_NAME = "student_train_step"
CONFIG_HEADER = "dmskd_device_config.h"


@dataclass(frozen=True)
class StudentStep:
    """The functional train step exported for TFLite-Micro, with its measured arena."""

    model: bytes
    ops: tuple[str, ...]
    batch: int
    input_dim: int
    num_classes: int
    num_weights: int  # floats of the packed weight buffer: dense_0/kernel, dense_0/bias, ...
    arena_measured: int
    arena_declared: int


@dataclass(frozen=True)
class ShardFiles:
    """The mcu artefact of one shard: its C identifier, model bytes and declared arena."""

    shard_id: str
    name: str
    model: bytes
    ops: tuple[str, ...]
    arena_measured: int
    arena_declared: int


@dataclass(frozen=True)
class FleetSettings:
    """What every firmware of the fleet shares: topic fleet name, pinned key, chunk limit."""

    fleet: str
    public_key: bytes | None  # 32 raw Ed25519 bytes, or None when the fleet key was not given
    chunk_limit: int

    def __post_init__(self) -> None:
        if self.public_key is not None and len(self.public_key) != 32:
            raise ValueError(f"fleet public key must be 32 raw Ed25519 bytes, got {len(self.public_key)}")
        if self.chunk_limit < MIN_FLEET_CHUNK_LIMIT:
            raise ValueError(f"chunk limit must be >= {MIN_FLEET_CHUNK_LIMIT} bytes (--chunk-limit), "
                             f"got {self.chunk_limit}")


def write_device_config(out: Path, device_class: str, shard: ShardFiles, student: StudentStep,
                        fleet: FleetSettings) -> list[Path]:
    """Write the configuration directory `out` for one device class; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    s = shard.name
    files = {
        f"{s}_model_data.cc": model_data_source(shard.model, s),
        f"{s}_model_data.h": model_data_header(s),
        f"{s}_op_resolver.h": op_resolver_header(list(shard.ops), s),
        f"{STUDENT_NAME}_model_data.cc": model_data_source(student.model, STUDENT_NAME),
        f"{STUDENT_NAME}_model_data.h": model_data_header(STUDENT_NAME),
        f"{STUDENT_NAME}_op_resolver.h": op_resolver_header(list(student.ops), STUDENT_NAME),
        CONFIG_HEADER: config_header(device_class, shard, student, fleet),
        "dmskd_device_config.cc": _config_source(s),
        "dmskd_tflm_resolvers.h": _resolvers_header(s),
        "config.cmake": config_cmake(device_class, shard, student, fleet),
        "config.json": json.dumps(_figures(device_class, shard, student, fleet), indent=2) + "\n",
    }
    written = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


def _figures(device_class: str, shard: ShardFiles, student: StudentStep, fleet: FleetSettings) -> dict:
    return {"device_class": device_class, "shard_id": shard.shard_id, "shard_name": shard.name,
            "shard_model_bytes": len(shard.model), "shard_arena_bytes": shard.arena_declared,
            "shard_arena_measured_bytes": shard.arena_measured, "student_model_bytes": len(student.model),
            "student_arena_bytes": student.arena_declared, "student_arena_measured_bytes": student.arena_measured,
            "student_batch": student.batch, "student_input_dim": student.input_dim,
            "student_num_classes": student.num_classes, "student_num_weights": student.num_weights,
            "fleet": fleet.fleet, "topic_prefix": topic_prefix(fleet.fleet), "chunk_limit": fleet.chunk_limit,
            "fleet_public_key": fleet.public_key.hex() if fleet.public_key else None}


def topic_prefix(fleet: str) -> str:
    """dmskd/<fleet>/ (DESIGN.md §4)."""
    return f"dmskd/{fleet}/"


def _c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of printable ASCII is a valid C string literal


def config_header(device_class: str, shard: ShardFiles, student: StudentStep, fleet: FleetSettings) -> str:
    """dmskd_device_config.h: C and C++; no TFLM types, so the C core can include it too."""
    key = fleet.public_key
    key_lines = ("#define DMSKD_HAVE_FLEET_PUBLIC_KEY 1\n#define DMSKD_FLEET_PUBLIC_KEY_BYTES { "
                 + ", ".join(f"0x{b:02x}" for b in key) + " }\n") if key else (
        "/* No fleet public key was given to `python -m export` (--fleet-key): the firmware cannot verify\n"
        " * signed plans and models until it is rebuilt with one. */\n#define DMSKD_HAVE_FLEET_PUBLIC_KEY 0\n")
    prefix = topic_prefix(fleet.fleet)
    return f"""/* Generated by `python -m export` for device class {device_class!r}; do not edit. */
#ifndef DMSKD_DEVICE_CONFIG_H_
#define DMSKD_DEVICE_CONFIG_H_

#ifdef __cplusplus
extern "C" {{
#endif

#define DMSKD_DEVICE_CLASS {_c_string(device_class)}
#define DMSKD_SHARD_ID {_c_string(shard.shard_id)}

/* The shard (full-int8, batch 1): {len(shard.model)} bytes; arena measured in TFLite-Micro
 * {shard.arena_measured} B, declared with headroom. */
extern const unsigned char *const dmskd_shard_model_data;
#define DMSKD_SHARD_MODEL dmskd_shard_model_data
#define DMSKD_SHARD_MODEL_LEN {len(shard.model)}u
#define DMSKD_SHARD_ARENA_MEASURED_BYTES {shard.arena_measured}u
#define DMSKD_SHARD_ARENA_BYTES {shard.arena_declared}u

/* The student's functional train step: {len(student.model)} bytes; arena measured {student.arena_measured} B. */
extern const unsigned char *const dmskd_student_model_data;
#define DMSKD_STUDENT_MODEL dmskd_student_model_data
#define DMSKD_STUDENT_MODEL_LEN {len(student.model)}u
#define DMSKD_STUDENT_ARENA_MEASURED_BYTES {student.arena_measured}u
#define DMSKD_STUDENT_ARENA_BYTES {student.arena_declared}u
#define DMSKD_STUDENT_BATCH {student.batch}u
#define DMSKD_STUDENT_INPUT_DIM {student.input_dim}u
#define DMSKD_STUDENT_NUM_CLASSES {student.num_classes}u
#define DMSKD_STUDENT_NUM_WEIGHTS {student.num_weights}u
/* No initial weights: a device trains the global model it fetched (model/<version>), never its own. */

/* The fleet (DESIGN.md section 4): topics under DMSKD_TOPIC_PREFIX. */
#define DMSKD_FLEET {_c_string(fleet.fleet)}
#define DMSKD_TOPIC_PREFIX {_c_string(prefix)}
#define DMSKD_TOPIC_PLAN_PREFIX {_c_string(prefix + "plan/")}
#define DMSKD_TOPIC_SHARD {_c_string(prefix + "shard/" + shard.shard_id)}
#define DMSKD_TOPIC_MODEL_PREFIX {_c_string(prefix + "model/")}
#define DMSKD_TOPIC_ROUND_PREFIX {_c_string(prefix + "round/")}
#define DMSKD_TOPIC_STATUS_PREFIX {_c_string(prefix + "status/")}
#define DMSKD_CHUNK_LIMIT {fleet.chunk_limit}u
{key_lines}
#ifdef __cplusplus
}}
#endif

#endif /* DMSKD_DEVICE_CONFIG_H_ */
"""


def _config_source(shard_name: str) -> str:
    return (f"// Generated by `python -m export`; do not edit. C-linkage handles on the C++ model arrays.\n"
            f"#include \"{CONFIG_HEADER}\"\n#include \"{shard_name}_model_data.h\"\n"
            f"#include \"{STUDENT_NAME}_model_data.h\"\n\n"
            f"extern \"C\" const unsigned char *const dmskd_shard_model_data = {shard_name}_model_data;\n"
            f"extern \"C\" const unsigned char *const dmskd_student_model_data = {STUDENT_NAME}_model_data;\n")


def _resolvers_header(shard_name: str) -> str:
    return (f"// Generated by `python -m export`; do not edit. The resolvers the TFLM glue compiles in.\n"
            f"#ifndef DMSKD_TFLM_RESOLVERS_H_\n#define DMSKD_TFLM_RESOLVERS_H_\n\n"
            f"#include \"{CONFIG_HEADER}\"\n#include \"{shard_name}_op_resolver.h\"\n"
            f"#include \"{STUDENT_NAME}_op_resolver.h\"\n\n"
            f"#define DMSKD_SHARD_RESOLVER {resolver_type_name(shard_name)}\n"
            f"#define DMSKD_SHARD_REGISTER_OPS {c_identifier(shard_name)}_register_ops\n"
            f"#define DMSKD_STUDENT_RESOLVER {resolver_type_name(STUDENT_NAME)}\n"
            f"#define DMSKD_STUDENT_REGISTER_OPS {STUDENT_NAME}_register_ops\n\n#endif  // DMSKD_TFLM_RESOLVERS_H_\n")


def config_cmake(device_class: str, shard: ShardFiles, student: StudentStep, fleet: FleetSettings) -> str:
    """config.cmake: the sources to compile and the figures, for firmware_stubs' CMake."""
    srcs = [f"{shard.name}_model_data.cc", f"{STUDENT_NAME}_model_data.cc", "dmskd_device_config.cc"]
    src_lines = "\n".join(f"  \"${{CMAKE_CURRENT_LIST_DIR}}/{s}\"" for s in srcs)
    return (f"# Generated by `python -m export` for device class {device_class!r}; do not edit.\n"
            f"set(DMSKD_DEVICE_CLASS \"{device_class}\")\n"
            f"set(DMSKD_SHARD_ID \"{shard.shard_id}\")\n"
            f"set(DMSKD_CONFIG_SOURCES\n{src_lines})\n"
            f"set(DMSKD_CONFIG_OPS {' '.join(sorted(set(shard.ops) | set(student.ops)))})\n"
            f"set(DMSKD_CONFIG_INCLUDE_DIR \"${{CMAKE_CURRENT_LIST_DIR}}\")\n"
            f"set(DMSKD_SHARD_ARENA_BYTES {shard.arena_declared})\n"
            f"set(DMSKD_STUDENT_ARENA_BYTES {student.arena_declared})\n"
            f"set(DMSKD_CHUNK_LIMIT {fleet.chunk_limit})\n")


def shard_files(artefact, out: Path) -> ShardFiles:
    """ShardFiles of an mcu Artefact written under `out` (export.targets.mcu)."""
    if artefact.target != "mcu" or artefact.arena is None:
        raise ValueError(f"shard {artefact.shard_id}: a firmware configuration needs its mcu artefact, "
                         f"got target {artefact.target}")
    return ShardFiles(artefact.shard_id, c_identifier(f"shard_{artefact.shard_id}"),
                      (out / artefact.model.path).read_bytes(), tuple(artefact.ops),
                      artefact.arena.measured_bytes, artefact.arena.with_headroom_bytes)
