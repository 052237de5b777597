"""The device fingerprint: what a result was measured on, so figures are compared like with like.

Every probe is optional: a missing file, command or library leaves its field out instead of failing,
and the whole fingerprint takes well under a second (no heavy imports, short command timeouts).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil

# CPU flags that decide which kernels the backends can use (AVX-512 / VNNI for INT8, AMX / BF16).
CPU_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimd",  # Arm NEON
    "asimddp",  # Arm dot product (INT8)
    "fphp",
)
# What every measurement runs on; the pipeline adds each target's own libraries (`Target.libraries`).
LIBRARIES = ("torch", "torchvision", "ultralytics", "numpy")
COMMAND_TIMEOUT_S = 0.5


def read_probe(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip().rstrip("\x00")
    except OSError:
        return None


def run_probe(*args: str) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (x86 and Arm spell the keys differently)."""
    info: dict[str, str] = {}
    for line in (read_probe("/proc/cpuinfo") or "").splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip().lower(), value.strip())
    return info


def cpu_info() -> dict[str, Any]:
    info = _cpuinfo()
    model = info.get("model name") or info.get("hardware") or platform.processor() or platform.machine()
    present = set((info.get("flags") or info.get("features") or "").split())
    governor = read_probe("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    cpu: dict[str, Any] = {
        "model": model,
        "arch": platform.machine(),
        "flags": [flag for flag in CPU_FLAGS if flag in present],
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "governor": governor,
    }
    freq = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None
    if freq is not None and freq.max:
        cpu["max_mhz"] = round(freq.max)
    return cpu


def gpu_info() -> list[dict[str, Any]]:
    """NVIDIA GPUs from nvidia-smi (name, driver, memory); CUDA from its banner or torch when loaded."""
    gpus: list[dict[str, Any]] = []
    listing = run_probe("nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
    cuda = None
    if listing:
        banner = run_probe("nvidia-smi") or ""
        match = re.search(r"CUDA Version:\s*([\d.]+)", banner)
        cuda = match.group(1) if match else None
        for line in listing.splitlines():
            name, driver, memory = (part.strip() for part in [*line.split(","), "", ""][:3])
            gpus.append({"name": name, "driver": driver, "memory": memory, "cuda": cuda})
    torch = sys.modules.get("torch")  # never import torch just for this: it costs seconds
    if not gpus and torch is not None and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            gpus.append({"name": torch.cuda.get_device_name(index), "cuda": torch.version.cuda})
    return gpus


def temperatures() -> dict[str, float]:
    """Thermal zones in degrees Celsius, by zone type (e.g. 'CPU-therm', 'GPU-therm', 'x86_pkg_temp')."""
    temps: dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        kind, milli = read_probe(zone / "type"), read_probe(zone / "temp")
        with contextlib.suppress(TypeError, ValueError):
            temps[kind or zone.name] = int(milli) / 1000  # type: ignore[arg-type]
    return temps


def jetson_info() -> dict[str, Any] | None:
    """Model, L4T release, power mode, clocks and temperatures on an NVIDIA Jetson; None elsewhere."""
    release = read_probe("/etc/nv_tegra_release")
    model = read_probe("/proc/device-tree/model")
    if release is None and not (model and "jetson" in model.lower()):
        return None
    jetson: dict[str, Any] = {"model": model}
    if release:
        match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
        jetson["l4t"] = f"{match.group(1)}.{match.group(2)}" if match else release.splitlines()[0]
    jetpack = run_probe("dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack")
    if jetpack:
        jetson["jetpack"] = jetpack
    power = run_probe("nvpmodel", "-q")
    if power:
        jetson["nvpmodel"] = " ".join(line.strip() for line in power.splitlines() if line.strip())
    jetson["jetson_clocks"] = _clocks_pinned()
    jetson["temperatures_c"] = temperatures()
    jetson["tegrastats"] = _tegrastats_line()
    return jetson


def _clocks_pinned() -> bool | None:
    """jetson_clocks pins every CPU's minimum frequency to its maximum; None when unreadable."""
    cpus = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    pairs = [(read_probe(c / "scaling_min_freq"), read_probe(c / "scaling_max_freq")) for c in cpus]
    pairs = [(lo, hi) for lo, hi in pairs if lo and hi]
    return all(lo == hi for lo, hi in pairs) if pairs else None


def _tegrastats_line() -> str | None:
    """One line of tegrastats (RAM, CPU/GPU load and clocks, temperatures, power) when it is installed."""
    if shutil.which("tegrastats") is None:
        return None
    try:
        with subprocess.Popen(
            ["tegrastats", "--interval", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as proc:
            try:
                line = proc.stdout.readline().strip() if proc.stdout else ""
            finally:
                proc.kill()
        return line or None
    except OSError:
        return None


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of `LIBRARIES` and `extra`, read from package metadata (nothing is imported)."""
    versions = {"python": platform.python_version()}
    for name in dict.fromkeys((*LIBRARIES, *extra)):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


@lru_cache(maxsize=1)
def _static_fingerprint() -> dict[str, Any]:
    cpu = cpu_info()
    jetson = jetson_info()
    return {
        "cpu": cpu,
        "gpus": gpu_info(),
        "jetson": jetson,
        "os": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
        "memory_gb": _memory_gb(),
    }


def _memory_gb() -> float:
    return round(psutil.virtual_memory().total / 2**30, 1)


def device_name(fingerprint: dict[str, Any], accelerator: str = "cpu") -> str:
    """A short stable name for budgets' device globs: the Jetson model, the GPU used, else the CPU model."""
    if fingerprint.get("jetson") and fingerprint["jetson"].get("model"):
        return str(fingerprint["jetson"]["model"])
    if accelerator.startswith("cuda") and fingerprint.get("gpus"):
        index = int(accelerator.partition(":")[2] or 0)
        gpus = fingerprint["gpus"]
        return str(gpus[min(index, len(gpus) - 1)]["name"])
    return str(fingerprint["cpu"]["model"])


def fingerprint(accelerator: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """The device a measurement runs on; `accelerator` ("cpu", "cuda:0") picks the name."""
    static = _static_fingerprint()
    return {
        "name": device_name(static, accelerator),
        "accelerator": accelerator,
        **static,
        "threads_used": threads,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "temperatures_c": temperatures(),
    }
