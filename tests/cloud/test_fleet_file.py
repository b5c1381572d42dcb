"""Fleet files: TOML and YAML parse to the same devices, classes expand, units convert, and every
malformed file names its line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.fleet_file import FleetFileError, load_fleet, load_fleet_file, parse_fleet
from cloud.planner import DeviceProfile
from export.op_support import EDGETPU_OPS, TFLM_OPS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TOML = """
[fleet]
name = "pilot"

[defaults]
samples = 100

[[class]]
name = "meter"
count = 3
target = "mcu"
flops_per_sample = "1.5 MFLOP"
arena_kb = 64
flash_kb = "1 MB"
uplink_kbps = "20 kbps"

[[device]]
id = "gw-1"
target = "linux"
samples = 400
flops_per_epoch = 2e9
"""

YAML = """
fleet: {name: pilot}
defaults:
  samples: 100
classes:
  - name: meter
    count: 3
    target: mcu
    flops_per_sample: 1.5 MFLOP
    arena_kb: 64
    flash_kb: 1 MB
    uplink_kbps: 20 kbps
devices:
  - id: gw-1
    target: linux
    samples: 400
    flops_per_epoch: 2.0e+9
"""


def test_toml_and_yaml_describe_the_same_devices() -> None:
    t, y = parse_fleet(TOML, "toml", "f.toml"), parse_fleet(YAML, "yaml", "f.yaml")
    assert t.name == y.name == "pilot"
    assert t.devices == y.devices  # source (file:line) is not part of equality
    meter = t.devices[0]
    assert meter == DeviceProfile("meter-000", 1.5e6 * 100, 100, 64 * 1024, 1024 * 1024, "mcu",
                                  uplink_kbps=20.0, device_class="meter")
    assert meter.supported_ops == TFLM_OPS
    assert t.devices[-1].supported_ops is None and t.devices[-1].arena_bytes is None


@pytest.mark.parametrize("value, fraction", [('"none"', 0.0), ('"all"', 1.0), ("0.1", 0.1), ('"25%"', 0.25),
                                             ("0", 0.0), ("1", 1.0), (None, 1.0)])
def test_labels_field_gives_the_labelled_fraction_and_defaults_to_all(value: str | None, fraction: float) -> None:
    (device,) = parse_fleet(_device(labels=value), "toml", "f.toml").devices
    assert device.labelled_fraction == pytest.approx(fraction)


def test_labels_in_defaults_reach_every_class_device_unless_overridden() -> None:
    text = TOML.replace("[defaults]\n", '[defaults]\nlabels = "none"\n') + 'labels = "10%"\n'
    devices = {d.device_id: d.labelled_fraction for d in parse_fleet(text, "toml", "f.toml").devices}
    assert devices == {"meter-000": 0.0, "meter-001": 0.0, "meter-002": 0.0, "gw-1": pytest.approx(0.1)}


def test_a_class_expands_to_count_numbered_devices_and_records_its_line() -> None:
    devices = parse_fleet(TOML, "toml", "f.toml").devices
    assert [d.device_id for d in devices] == ["meter-000", "meter-001", "meter-002", "gw-1"]
    assert {d.device_class for d in devices[:3]} == {"meter"} and devices[3].device_class is None
    assert devices[0].source == "f.toml:8" and devices[3].source == "f.toml:17"
    wide = parse_fleet(TOML.replace("count = 3", "count = 1500"), "toml").devices
    assert wide[0].device_id == "meter-0000" and wide[1499].device_id == "meter-1499"


@pytest.mark.parametrize("budget, samples, per_epoch", [
    ('flops_per_sample = 2000', 100, 200_000),
    ('flops_per_sample = "2 kFLOP"', 100, 200_000),
    ('flops_per_sample = "1.5M"', 10, 15_000_000),
    ('flops_per_epoch = "5 GFLOP"', 7, 5e9),
    ('flops_per_epoch = "800 MFLOPs"', 7, 8e8),
    ('flops_per_epoch = 3_000_000', 7, 3e6),
], ids=["per-sample", "per-sample-k", "per-sample-M", "per-epoch-G", "per-epoch-M", "per-epoch-int"])
def test_flop_budget_units_and_per_sample_to_per_epoch(budget: str, samples: int, per_epoch: float) -> None:
    [d] = parse_fleet(f'[[device]]\nid = "a"\ntarget = "linux"\nsamples = {samples}\n{budget}\n', "toml").devices
    assert d.flops_per_epoch == pytest.approx(per_epoch)


@pytest.mark.parametrize("field, value, expected", [
    ("arena_kb", "256", 256 * 1024),
    ("arena_kb", '"1.5 MB"', int(1.5 * 1024 * 1024)),
    ("arena_bytes", "4096", 4096),
    ("arena_bytes", '"48 KiB"', 48 * 1024),
])
def test_memory_units(field: str, value: str, expected: int) -> None:
    [d] = parse_fleet(f'[[device]]\nid = "a"\ntarget = "edgetpu"\nsamples = 1\nflops_per_epoch = 1e6\n'
                      f'{field} = {value}\n', "toml").devices
    assert d.arena_bytes == expected
    assert d.supported_ops == EDGETPU_OPS


def test_an_entry_budget_replaces_the_default_budget_of_either_kind() -> None:
    text = ('[defaults]\nsamples = 10\nflops_per_sample = 1000\n'
            '[[device]]\nid = "a"\ntarget = "linux"\nflops_per_epoch = 5e6\n'
            '[[device]]\nid = "b"\ntarget = "linux"\n')
    a, b = parse_fleet(text, "toml").devices
    assert a.flops_per_epoch == 5e6 and b.flops_per_epoch == 10_000


def test_the_shipped_examples_parse_alike() -> None:
    toml, yaml_ = load_fleet_file(EXAMPLES / "fleet.toml"), load_fleet_file(EXAMPLES / "fleet.yaml")
    assert toml.devices == yaml_.devices and len(toml.devices) >= 200
    assert {d.target for d in toml.devices} == {"linux", "edgetpu", "mcu"}
    per_sample = [d.flops_per_epoch / d.num_samples for d in toml.devices]
    assert max(per_sample) / min(per_sample) >= 10
    assert load_fleet(EXAMPLES / "fleet.yaml") == yaml_.devices


def _device(extra: str = "", **fields: str) -> str:
    base = {"id": '"a"', "target": '"linux"', "samples": "10", "flops_per_epoch": "1e6"}
    base.update(fields)
    return "[[device]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v is not None) + extra


# (name, format, text, line, field, words the message must contain)
MALFORMED = [
    ("toml-syntax", "toml", '[[device]]\nid = "a"\ntarget = \n', 3, None, "TOML syntax error"),
    ("unknown-field", "toml", _device('flops_per_epcoh = 5\n'), 6, "flops_per_epcoh",
     "unknown field 'flops_per_epcoh'; expected one of"),
    ("bad-target", "toml", _device(target='"riscv"'), 3, "target", "expected one of linux, edgetpu, mcu, got 'riscv'"),
    ("bad-flops-unit", "toml", _device(flops_per_epoch='"5 GFLOPZ"'), 5, "flops_per_epoch",
     'expected a positive FLOP count such as 5e9 or "5 GFLOP"'),
    ("negative-flops", "toml", _device(flops_per_epoch="-1"), 5, "flops_per_epoch", "positive FLOP count"),
    ("two-budgets", "toml", _device("flops_per_sample = 10\n"), 6, "flops_per_sample",
     "give one of flops_per_epoch or flops_per_sample, not both"),
    ("two-default-budgets", "toml", "[defaults]\narena_kb = 4\narena_bytes = 4096\n" + _device(), 3, "arena_bytes",
     "[defaults]: give one of arena_kb or arena_bytes, not both"),
    ("no-budget", "toml", _device(flops_per_epoch=None), 1, "flops_per_epoch", "has no FLOP budget"),
    ("no-samples", "toml", _device(samples=None), 1, "samples", "has no 'samples'"),
    ("zero-samples", "toml", _device(samples="0"), 4, "samples", "expected an integer >= 1, got 0"),
    ("float-samples", "toml", _device(samples="2.5"), 4, "samples", "expected an integer >= 1, got 2.5"),
    ("mcu-without-arena", "toml", _device(target='"mcu"', flash_kb="64"), 1, "arena_kb", "needs arena_kb"),
    ("bad-arena-unit", "toml", _device(arena_kb='"12 parsecs"'), 6, "arena_kb", 'such as "256 KB"'),
    ("bad-labels-word", "toml", _device(labels='"some"'), 6, "labels", 'expected "none", "all", a fraction'),
    ("labels-above-one", "toml", _device(labels="1.5"), 6, "labels", "got 1.5"),
    ("labels-bad-percent", "toml", _device(labels='"120%"'), 6, "labels", "got '120%'"),
    ("bad-rate", "toml", _device(uplink_kbps='"fast"'), 6, "uplink_kbps", "positive rate in kbit/s"),
    ("class-zero-count", "toml", '[[class]]\nname = "m"\ncount = 0\ntarget = "linux"\nsamples = 1\n'
     'flops_per_epoch = 1\n', 3, "count", "expected an integer >= 1, got 0"),
    ("class-without-name", "toml", '[[class]]\ncount = 2\ntarget = "linux"\n', 1, "name", "has no 'name'"),
    ("bad-id", "toml", _device(id='"a b"'), 2, "id", "letters, digits"),
    ("duplicate-id", "toml", _device() + _device(), 6, "id", "device id 'a' is used twice (also on line 1)"),
    ("unknown-top-level", "toml", 'fleets = 3\n' + _device(), 1, "fleets", "unknown top-level key 'fleets'"),
    ("no-devices", "toml", '[fleet]\nname = "x"\n', None, None, "the fleet has no devices"),
    ("yaml-syntax", "yaml", "devices:\n  - id: a\n   target: linux\n", 3, None, "YAML syntax error"),
    ("yaml-bad-samples", "yaml", "devices:\n  - id: a\n    target: linux\n    samples: -3\n"
     "    flops_per_epoch: 5\n", 4, "samples", "expected an integer >= 1, got -3"),
    ("yaml-duplicate-key", "yaml", "devices:\n  - id: a\n    target: linux\n    target: mcu\n", 4, "target",
     "key 'target' appears twice"),
    ("yaml-class-bad-arena", "yaml", "classes:\n  - name: m\n    count: 2\n    target: mcu\n    samples: 5\n"
     "    flops_per_sample: 1k\n    flash_kb: 64\n    arena_kb: lots\n", 8, "arena_kb", "class 'm' field 'arena_kb'"),
    ("yaml-devices-not-a-list", "yaml", "devices: 3\n", 1, "devices", "must be a list of tables"),
]


@pytest.mark.parametrize("fmt, text, line, field, words", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_fleet_files_name_the_line_and_field(fmt: str, text: str, line, field, words: str) -> None:
    with pytest.raises(FleetFileError) as info:
        parse_fleet(text, fmt, source=f"fleet.{fmt}")
    err = info.value
    assert (err.line, err.field) == (line, field), str(err)
    assert str(err).startswith(f"fleet.{fmt}:{line}: " if line else f"fleet.{fmt}: "), str(err)
    assert words in str(err), str(err)


def test_missing_and_misnamed_files_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FleetFileError, match="no such file; pass the path"):
        load_fleet(tmp_path / "absent.toml")
    (tmp_path / "fleet.json").write_text("{}")
    with pytest.raises(FleetFileError, match=r"must end in \.toml, \.yaml or \.yml"):
        load_fleet(tmp_path / "fleet.json")
