"""A fleet described by hand, in TOML or YAML, read into `DeviceProfile`s for the planner.

Layout (TOML shown; YAML uses the same keys, `class`/`classes` and `device`/`devices` as lists):

    [fleet]                      # optional
    name = "smart-meter pilot"

    [defaults]                   # optional: fields every class and device inherits
    samples = 120

    [[class]]                    # `count` devices named <name>-000 .. <name>-<count-1>
    name = "meter"
    count = 200
    target = "mcu"               # linux | edgetpu | mcu
    flops_per_sample = "1 MFLOP" # or flops_per_epoch (= flops_per_sample * samples)
    arena_kb = 64                # RAM for the TFLite-Micro tensor arena
    flash_kb = 256               # flash for the model
    uplink_kbps = 20

    [[device]]                   # one device
    id = "gw-lab"
    target = "linux"
    flops_per_epoch = 5e9
    samples = 400

Fields of a class or device:
  target            required: linux, edgetpu or mcu
  samples           required: local samples, an integer >= 1
  flops_per_epoch | flops_per_sample
                    exactly one: the FLOP budget of one local epoch, or of one sample (times
                    samples gives the epoch budget). A number, or a string with an SI prefix:
                    "5 GFLOP", "2.5e9", "800 MFLOPs", "40k" (k = 1e3, M = 1e6, G = 1e9, T = 1e12).
  arena_kb | arena_bytes
                    RAM for the tensor arena; required for mcu, optional (no limit) otherwise.
                    A bare number is in KB (arena_kb) or bytes (arena_bytes); a string may carry
                    its unit: "256 KB", "1.5 MB", "2048 B". KB = KiB = 1024 B, MB = 1024 KB.
  flash_kb | flash_bytes
                    flash for the model, the same way; required for mcu.
  uplink_kbps       link rate in kbit/s (1 kbit = 1000 bit), or "250 kbps", "1 Mbps". Optional.
  downlink_kbps     download rate if it differs from uplink_kbps. Optional.
  labels            how many of the device's samples carry labels it may train on: "none" (a meter:
                    the shard is its only supervisor), "all", a fraction in [0, 1] or a percentage
                    ("10%"). Optional, default "all" (train on whatever labels the local data holds).
  description       free text, ignored.
A class also has `name` and `count`; a device has `id`. A class's or device's own field replaces
the same field in [defaults], and its own budget (arena, flash) replaces any budget form there.

Every mistake raises FleetFileError naming the file, the line and the field, and what was expected.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cloud.planner import DeviceProfile
from edge.plan import parse_label_fraction
from export.op_support import TARGETS  # linux, edgetpu, mcu

MAX_CLASS_COUNT = 1_000_000

_COMMON = ("target", "samples", "flops_per_epoch", "flops_per_sample", "arena_kb", "arena_bytes", "flash_kb",
           "flash_bytes", "uplink_kbps", "downlink_kbps", "labels", "description")
_GROUPS = {"flops_per_epoch": "flops", "flops_per_sample": "flops", "arena_kb": "arena", "arena_bytes": "arena",
           "flash_kb": "flash", "flash_bytes": "flash"}
_TOP = {"fleet": ("name", "description"), "defaults": _COMMON}
_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_FLOP_UNITS = {p + s: f for p, f in _SI.items() for s in ("", "FLOP", "FLOPs", "FLOPS", "flop", "flops") if p + s}
_BYTE_UNITS = {"b": 1, "kb": 1024, "kib": 1024, "k": 1024, "mb": 1024 ** 2, "mib": 1024 ** 2, "m": 1024 ** 2,
               "gb": 1024 ** 3, "gib": 1024 ** 3}
_RATE_UNITS = {"bps": 1e-3, "bit/s": 1e-3, "kbps": 1.0, "kbit/s": 1.0, "mbps": 1e3, "mbit/s": 1e3,
               "gbps": 1e6, "gbit/s": 1e6}


class FleetFileError(ValueError):
    """A fleet file that cannot be read: names the file, the line and the field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str) -> None:
        self.path, self.line, self.field = path, line, field
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Fleet:
    """A parsed fleet file: its name and its devices, in file order (classes expanded)."""

    name: str
    devices: list[DeviceProfile]
    path: str


def load_fleet(path: str | Path) -> list[DeviceProfile]:
    """The devices described by a .toml, .yaml or .yml fleet file."""
    return load_fleet_file(path).devices


def load_fleet_file(path: str | Path) -> Fleet:
    """Read and parse a fleet file; the format follows the extension."""
    p = Path(path)
    if p.suffix.lower() not in (".toml", ".yaml", ".yml"):
        raise FleetFileError(str(p), None, None, "a fleet file must end in .toml, .yaml or .yml")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FleetFileError(str(p), None, None, "no such file; pass the path of a fleet description "
                                                 "(see examples/fleet.toml)") from None
    except IsADirectoryError:
        raise FleetFileError(str(p), None, None, "is a directory; pass a fleet file (.toml, .yaml), such as "
                                                 "examples/fleet.toml") from None
    except UnicodeDecodeError as exc:
        raise FleetFileError(str(p), None, None, f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save the "
                                                 f"fleet description as UTF-8") from None
    except OSError as exc:
        raise FleetFileError(str(p), None, None, f"cannot read it: {exc.strerror}") from None
    return parse_fleet(text, "toml" if p.suffix.lower() == ".toml" else "yaml", source=str(p))


def parse_fleet(text: str, fmt: str, source: str = "<fleet>") -> Fleet:
    """Parse fleet text ('toml' or 'yaml'); source names the file in errors."""
    if fmt == "toml":
        data, lines = _read_toml(text, source)
    elif fmt == "yaml":
        data, lines = _read_yaml(text, source)
    else:
        raise ValueError(f"fleet format must be 'toml' or 'yaml', got {fmt!r}")
    return _Builder(source, lines).fleet(data)


# -- reading: a plain value tree plus the line of every key path --


def _read_toml(text: str, source: str) -> tuple[dict, dict[tuple, int]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise FleetFileError(source, int(m.group(1)) if m else None, None,
                             f"TOML syntax error: {exc}; fix the syntax (https://toml.io)") from None
    return data, _toml_key_lines(text)


def _toml_key_lines(text: str) -> dict[tuple, int]:
    """Line of every [table], [[array]] entry and key, found by scanning the text."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    counts: dict[tuple, int] = {}
    in_multiline: str | None = None
    for no, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if in_multiline:
            if in_multiline in s:
                in_multiline = None
            continue
        if not s or s.startswith("#"):
            continue
        if s.startswith("[["):
            name = _dotted(s[2:s.find("]]")])
            index = counts.get(name, 0)
            counts[name] = index + 1
            table = (*name, index)
            lines.setdefault(table, no)
            continue
        if s.startswith("["):
            table = _dotted(s[1:s.find("]")])
            lines.setdefault(table, no)
            continue
        m = re.match(r"""("[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=\s*(.*)""", s)
        if m:
            key = _dotted(m.group(1))
            lines.setdefault((*table, *key), no)
            rest = m.group(2)
            for quote in ('"""', "'''"):
                if rest.startswith(quote) and rest.count(quote) == 1:
                    in_multiline = quote
    return lines


def _dotted(key: str) -> tuple[str, ...]:
    """A TOML (dotted, maybe quoted) key or table name as a key path: 'a."b".c' -> ('a', 'b', 'c')."""
    return tuple(p.strip().strip("\"'") for p in key.split("."))


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FleetFileError(source, mark.line + 1 if mark else None, None,
                             f"YAML syntax error: {exc.problem or exc}; fix the syntax") from None
    except yaml.YAMLError as exc:
        raise FleetFileError(source, None, None, f"YAML syntax error: {exc}") from None
    lines: dict[tuple, int] = {}
    if root is None:
        return {}, lines
    constructor = yaml.SafeLoader("")  # only its scalar constructor is used

    def walk(node: yaml.Node, path: tuple) -> Any:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merged = walk(value_node, path)
                    for k, v in (merged.items() if isinstance(merged, dict) else []):
                        out.setdefault(k, v)
                    continue
                key = constructor.construct_object(key_node)
                if key in out:
                    raise FleetFileError(source, key_node.start_mark.line + 1, str(key),
                                         f"key '{key}' appears twice in the same mapping (first on line "
                                         f"{lines.get((*path, key))}); keep one")
                lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = walk(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(v, (*path, i)) for i, v in enumerate(node.value)]
        return constructor.construct_object(node)

    return walk(root, ()), lines


# -- building devices, with every error located --


class _Builder:
    def __init__(self, source: str, lines: dict[tuple, int]) -> None:
        self.source, self.lines = source, lines

    def line(self, path: tuple) -> int | None:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None

    def fail(self, path: tuple, field: str | None, message: str) -> FleetFileError:
        return FleetFileError(self.source, self.line(path), field, message)

    def fleet(self, data: Any) -> Fleet:
        if not isinstance(data, dict):
            raise self.fail((), None, "the top level must be a mapping with [[class]] and/or [[device]] entries")
        sections = {"class": None, "device": None}
        for key in data:
            base = {"classes": "class", "devices": "device"}.get(key, key)
            if base in sections:
                if sections[base] is not None:
                    raise self.fail((key,), key, f"both '{sections[base]}' and '{key}' are given; use one of them")
                sections[base] = key
            elif key not in _TOP:
                raise self.fail((key,), key, f"unknown top-level key '{key}'; expected fleet, defaults, "
                                             f"class (or classes) and device (or devices)")
        name = "fleet"
        if "fleet" in data:
            meta = self.table(data["fleet"], ("fleet",), "[fleet]", _TOP["fleet"])
            name = str(meta["name"][0]) if "name" in meta else name
        defaults = self.table(data.get("defaults", {}), ("defaults",), "[defaults]", _COMMON)
        self.one_per_group(defaults, "[defaults]")
        devices: list[DeviceProfile] = []
        seen: dict[str, int | None] = {}
        for kind in ("class", "device"):
            key = sections[kind]
            if key is None:
                continue
            entries = data[key]
            if isinstance(entries, dict):
                entries = [entries]
            if not isinstance(entries, list):
                raise self.fail((key,), key, f"'{key}' must be a list of tables ([[{kind}]] in TOML, a list "
                                             f"of mappings in YAML), got {type(entries).__name__}")
            for i, entry in enumerate(entries):
                line = self.line((key, i))
                for d in self.entry(kind, entry, (key, i), defaults):
                    if d.device_id in seen:
                        raise FleetFileError(self.source, line, "id", f"device id '{d.device_id}' is used twice "
                                             f"(also on line {seen[d.device_id]}); ids must be unique")
                    seen[d.device_id] = line
                    devices.append(d)
        if not devices:
            raise self.fail((), None, "the fleet has no devices; add a [[class]] with a count or a [[device]]")
        return Fleet(name, devices, self.source)

    def table(self, value: Any, path: tuple, what: str, allowed: tuple) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, path[-1] if path else None, f"{what} must be a table/mapping of fields, "
                                                            f"got {type(value).__name__}")
        for k in value:
            if k not in allowed:
                raise self.fail((*path, k), str(k), f"{what}: unknown field '{k}'; expected one of "
                                                    f"{', '.join(allowed)}")
        return {k: (v, (*path, k)) for k, v in value.items()}

    def one_per_group(self, fields: dict, what: str) -> None:
        """At most one way of giving each budget: flops_per_epoch | flops_per_sample, arena_*, flash_*."""
        for group in ("flops", "arena", "flash"):
            given = [k for k in fields if _GROUPS.get(k) == group]
            if len(given) > 1:
                raise self.fail(fields[given[1]][1], given[1], f"{what}: give one of {' or '.join(given)}, not both")

    def entry(self, kind: str, entry: Any, path: tuple, defaults: dict) -> list[DeviceProfile]:
        head = ("name", "count") if kind == "class" else ("id",)
        own = self.table(entry, path, f"[[{kind}]] #{path[-1] + 1}", head + _COMMON)
        key = head[0]
        if key not in own:
            raise self.fail(path, key, f"[[{kind}]] #{path[-1] + 1} has no '{key}'; give every {kind} "
                                       f"a{'' if kind == 'device' else ' unique'} {key}")
        label_value, label_path = own[key]
        if not isinstance(label_value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", label_value):
            raise self.fail(label_path, key, f"{kind} {key} must be a string of letters, digits, '-', '_' or "
                                             f"'.' (it names MQTT topics), got {label_value!r}")
        what = f"{kind} '{label_value}'"
        merged = {k: v for k, v in defaults.items()
                  if k not in own and not (k in _GROUPS and any(_GROUPS.get(o) == _GROUPS[k] for o in own))}
        merged.update(own)
        self.one_per_group(own, what)
        target = self.choice(merged, "target", what, path)
        samples = self.integer(merged, "samples", what, path)
        if "flops_per_epoch" in merged:
            budget = self.flops(merged, "flops_per_epoch", what)
        elif "flops_per_sample" in merged:
            budget = self.flops(merged, "flops_per_sample", what) * samples
        else:
            raise self.fail(path, "flops_per_epoch", f"{what} has no FLOP budget; add flops_per_epoch or "
                                                     f"flops_per_sample (e.g. flops_per_sample = \"2 MFLOP\")")
        arena = self.memory(merged, "arena", what)
        flash = self.memory(merged, "flash", what)
        if target == "mcu":
            for name, value in (("arena", arena), ("flash", flash)):
                if value is None:
                    raise self.fail(path, f"{name}_kb", f"{what} is an mcu and needs {name}_kb (or {name}_bytes): "
                                                        f"the planner must check the shard against it")
        uplink = self.rate(merged, "uplink_kbps", what)
        downlink = self.rate(merged, "downlink_kbps", what)
        if kind == "device":
            ids, cls = [label_value], None
        else:
            count = self.integer(own, "count", what, path)
            if count > MAX_CLASS_COUNT:
                raise self.fail(own["count"][1], "count", f"{what}: count {count:,} is more than "
                                                          f"{MAX_CLASS_COUNT:,}; split the class")
            width = max(3, len(str(count - 1)))
            ids, cls = [f"{label_value}-{i:0{width}d}" for i in range(count)], label_value
        labels = self.labels(merged, what)
        src = f"{self.source}:{self.line(path)}"
        return [DeviceProfile(i, budget, samples, arena, flash, target, None, uplink, downlink, cls, src, labels)
                for i in ids]

    # field readers: each names the field and what it expects; entry is the path of the class/device

    def choice(self, fields: dict, name: str, what: str, entry: tuple) -> str:
        if name not in fields:
            raise self.fail(entry, name, f"{what} has no '{name}'; add {name} = one of {', '.join(TARGETS)}")
        value, path = fields[name]
        if value not in TARGETS:
            raise self.fail(path, name, f"{what} field '{name}': expected one of {', '.join(TARGETS)}, got {value!r}")
        return value

    def labels(self, fields: dict, what: str) -> float:
        if "labels" not in fields:
            return 1.0
        value, path = fields["labels"]
        try:
            return parse_label_fraction(value)
        except ValueError as exc:
            raise self.fail(path, "labels", f"{what} field 'labels': {exc}") from None

    def integer(self, fields: dict, name: str, what: str, entry: tuple) -> int:
        if name not in fields:
            raise self.fail(entry, name, f"{what} has no '{name}'; add {name} = <integer >= 1>")
        value, path = fields[name]
        if isinstance(value, str) and re.fullmatch(r"\s*\d[\d_,]*\s*", value):
            value = int(value.replace("_", "").replace(",", ""))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(path, name, f"{what} field '{name}': expected an integer >= 1, got {value!r}")
        return value

    def flops(self, fields: dict, name: str, what: str) -> float:
        return self.quantity(fields, name, what, _FLOP_UNITS, 1.0, "a positive FLOP count such as 5e9 or "
                             "\"5 GFLOP\" (prefixes k, M, G, T)", case_sensitive=True)

    def memory(self, fields: dict, group: str, what: str) -> int | None:
        for name, bare in ((f"{group}_kb", 1024), (f"{group}_bytes", 1)):
            if name in fields:
                return int(self.quantity(fields, name, what, _BYTE_UNITS, bare,
                                         f"a size in {'KB' if bare == 1024 else 'bytes'} or a string with a unit "
                                         f"such as \"256 KB\" or \"1.5 MB\" (KB = 1024 B)", zero_ok=True))
        return None

    def rate(self, fields: dict, name: str, what: str) -> float | None:
        if name not in fields:
            return None
        return self.quantity(fields, name, what, _RATE_UNITS, 1.0, "a positive rate in kbit/s (a number) or a "
                             "string such as \"250 kbps\" or \"1 Mbps\"")

    def quantity(self, fields: dict, name: str, what: str, units: Mapping[str, float], bare: float, expected: str,
                 case_sensitive: bool = False, zero_ok: bool = False) -> float:
        """A finite number > 0 (>= 0 with zero_ok), bare or with a unit from units; else the field's error."""
        value, path = fields[name]
        n = _number_with_unit(value, units, bare, case_sensitive)
        if n is None or not math.isfinite(n) or n < 0 or (n == 0 and not zero_ok):
            raise self.fail(path, name, f"{what} field '{name}': expected {expected}, got {value!r}")
        return n


_NUMBER = re.compile(r"\s*([0-9][0-9_,]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z/]*)\s*")


def _number_with_unit(value: Any, units: Mapping[str, float], bare: float,
                      case_sensitive: bool = False) -> float | None:
    """A number (times bare), or a string "<number> [unit]" with a unit from units; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) * bare
    if not isinstance(value, str) or not (m := _NUMBER.fullmatch(value)):
        return None
    unit = m.group(2) if case_sensitive else m.group(2).lower()
    factor = bare if not unit else units.get(unit)
    if factor is None:
        return None
    return float(m.group(1).replace("_", "").replace(",", "")) * factor


