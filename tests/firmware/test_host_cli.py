"""dmskd-firmware's command line: usage mistakes exit 2, failed runs exit 1, and each error names the fix."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.signed_artifact import generate_signing_key
from export.firmware_samples import samples_bytes

from .firmware_device import write_fleet_key


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "d.samples"
    data.write_bytes(samples_bytes(np.zeros((4, 8), np.float32), None))
    return {"data": data, "key": write_fleet_key(generate_signing_key(), tmp_path / "fleet-signing.pub"),
            "outbox": tmp_path / "outbox"}


def _run(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "x", "--fleet-key", "k"], "--device is required"),
    (["--device", "d", "--data", "x", "--fleet-key", "k", "--bogus"], "unknown flag or missing value: --bogus"),
    (["--device", "d/1", "--data", "x", "--fleet-key", "k"], "--device must be 1..48 letters"),
    (["--device", "d", "--data", "x", "--fleet-key", "k", "--broker", "host"], "--broker must be host:port"),
    (["--device", "d", "--data", "x", "--fleet-key", "k", "--chunk-limit", "100"], "--chunk-limit must be"),
    (["--device", "d", "--data", "x", "--fleet-key", "k", "--username", "u"], "needs both --username and"),
    (["--device", "d", "--data", "x", "--fleet-key", "k", "--tls-cert", "c"], "pass --tls-cert and --tls-key together"),
    (["--device", "d", "--data", "x", "--fleet-key", "k", "--tls-cert", "c", "--tls-key", "k"], "needs --tls-ca"),
])
def test_usage_mistakes_exit_2_naming_the_flag(firmware_build, args, message):
    done = _run(firmware_build.binary("dmskd-firmware"), *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "see `dmskd-firmware --help`" in done.stderr


def test_missing_or_wrong_files_and_no_broker_exit_1_naming_the_fix(firmware_build, files, tmp_path):
    binary = firmware_build.binary("dmskd-firmware")
    base = ["--device", "d", "--outbox", str(files["outbox"])]
    done = _run(binary, *base, "--data", str(files["data"]), "--fleet-key", str(tmp_path / "nope.pub"))
    assert done.returncode == 1 and "nope.pub not found; `python -m cloud provision`" in done.stderr
    done = _run(binary, *base, "--data", str(files["data"]), "--fleet-key", str(files["data"]))
    assert done.returncode == 1 and "pass the fleet-signing.pub" in done.stderr
    done = _run(binary, *base, "--data", str(files["key"]), "--fleet-key", str(files["key"]))
    assert done.returncode == 1 and "is not a DMSKD sample file" in done.stderr
    assert "export.firmware_samples.write_samples" in done.stderr
    done = _run(binary, *base, "--data", str(files["data"]), "--fleet-key", str(files["key"]),
                "--tls-ca", str(tmp_path / "ca.crt"))
    assert done.returncode == 1 and "--tls-ca" in done.stderr and "python -m cloud provision" in done.stderr
    done = _run(binary, *base, "--data", str(files["data"]), "--fleet-key", str(files["key"]),
                "--broker", f"127.0.0.1:{_free_port()}")
    assert done.returncode == 1 and "is the broker running at --broker" in done.stderr


def test_help_lists_every_flag(firmware_build):
    done = _run(firmware_build.binary("dmskd-firmware"), "--help")
    assert done.returncode == 0
    for flag in ("--device", "--fleet", "--data", "--broker", "--outbox", "--fleet-key", "--tls-ca", "--tls-cert",
                 "--tls-key", "--username",
                 "--password-file", "--resend-interval", "--chunk-limit", "--log-level"):
        assert flag in done.stdout
