"""The meter-plus device limits are written twice and must agree: the M4F image's CMake default
(port/freertos/CMakeLists.txt) and the size report (scripts/firmware_image_sizes.py), whose copy the tests
that build that configuration for the host take (tflm_build.METER_PLUS_LIMITS)."""

from __future__ import annotations

import re
import sys

from .tflm_build import METER_PLUS_LIMITS, REPO

sys.path.insert(0, str(REPO / "scripts"))
import firmware_image_sizes as sizes


def test_the_image_the_size_report_and_the_tests_build_the_same_meter_plus_limits() -> None:
    cmake = (REPO / "firmware_stubs" / "port" / "freertos" / "CMakeLists.txt").read_text()
    found = re.search(r'set\(DMSKD_METER_PLUS_LIMITS "([^"]+)"\)', cmake)
    assert found is not None, "port/freertos/CMakeLists.txt no longer sets DMSKD_METER_PLUS_LIMITS"
    in_cmake = {name: int(value) for name, value in (item.split("=") for item in found.group(1).split(";"))}
    assert in_cmake == sizes.LIMITS
    assert METER_PLUS_LIMITS["DMSKD_REASSEMBLY_SLOTS"] == 2  # the fitting configuration the federation test runs
