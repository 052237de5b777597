"""The device fingerprint on this machine: a name, the CPU flags that matter, library versions, fast."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import pytest

from benchmarks.device import CPU_FLAGS, _static_fingerprint, device_name, fingerprint, library_versions


def cpuinfo_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            return set(line.partition(":")[2].split())
    return set()


def test_fingerprint_of_this_machine():
    fp = fingerprint(threads=2)
    assert fp["name"] and fp["name"] == fp["cpu"]["model"]
    assert fp["cpu"]["logical_cores"] >= 1
    assert fp["threads_used"] == 2
    assert fp["jetson"] is None or fp["jetson"]["model"]
    assert isinstance(fp["load_average"], list) and len(fp["load_average"]) == 3


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 flags")
def test_cpu_flags_are_the_ones_that_matter_and_present():
    present = cpuinfo_flags()
    flags = fingerprint()["cpu"]["flags"]
    assert flags == [f for f in CPU_FLAGS if f in present]
    assert "avx2" in flags
    if "avx512f" in present:  # this project's CI machines have AVX-512 (and AMX on Sapphire Rapids)
        assert {"avx512f", "avx512_vnni"} & set(flags)
    if "amx_tile" in present:
        assert {"amx_tile", "amx_bf16"} <= set(flags)


def test_library_versions_are_the_harness_and_the_named_ones_installed():
    versions = library_versions(("onnxruntime", "tensorrt", "no-such-distribution"))
    for name in ("python", "torch", "numpy", "ultralytics", "onnxruntime"):
        assert versions[name][0].isdigit(), name
    assert "openvino" not in versions and "no-such-distribution" not in versions  # named: the targets'
    assert "tensorrt" not in versions or versions["tensorrt"]


def test_fingerprint_is_fast_even_uncached():
    _static_fingerprint.cache_clear()
    started = time.perf_counter()
    fingerprint()
    assert time.perf_counter() - started < 1.0


def test_device_name_prefers_jetson_then_gpu_in_use():
    fp = {"cpu": {"model": "Intel Xeon"}, "gpus": [{"name": "NVIDIA H100"}], "jetson": None}
    assert device_name(fp, "cpu") == "Intel Xeon"
    assert device_name(fp, "cuda:0") == "NVIDIA H100"
    fp["jetson"] = {"model": "NVIDIA Jetson AGX Orin Developer Kit"}
    assert device_name(fp, "cuda") == "NVIDIA Jetson AGX Orin Developer Kit"
